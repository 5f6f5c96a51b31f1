package harness

import (
	"math"
	"testing"
	"time"
)

func TestBucketRoundTrip(t *testing.T) {
	prevLo := uint64(0)
	for i := range histBuckets {
		lo, w := bucketRange(i)
		if i > 0 && lo <= prevLo {
			t.Fatalf("bucket %d starts at %d, not above %d", i, lo, prevLo)
		}
		if bucketOf(lo) != i || bucketOf(lo+w-1) != i {
			t.Fatalf("bucket %d [%d, +%d) maps to %d / %d", i, lo, w, bucketOf(lo), bucketOf(lo+w-1))
		}
		prevLo = lo
	}
	if bucketOf(math.MaxUint64) != histBuckets-1 {
		t.Fatalf("max value in bucket %d", bucketOf(math.MaxUint64))
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	h.record(-5) // counts as zero
	f := func(q float64, want time.Duration) {
		t.Helper()
		got := h.quantile(q)
		if math.Abs(float64(got-want)) > float64(want)/16 {
			t.Errorf("q%.2f = %v, want %v ± 6.25%%", q, got, want)
		}
	}
	f(0.5, 5*time.Millisecond)
	f(0.99, 9900*time.Microsecond)
	f(1, 10*time.Millisecond)
	if h.quantile(1) > 10*time.Millisecond {
		t.Errorf("max quantile %v beyond the maximum", h.quantile(1))
	}
	var m histogram
	m.merge(&h)
	m.merge(&h)
	if m.n != 2*h.n || m.quantile(0.5) != h.quantile(0.5) || m.max != h.max {
		t.Errorf("merge: n %d q50 %v max %d", m.n, m.quantile(0.5), m.max)
	}
	s := h.summary()
	if s.Count != 10001 || s.MaxMs != 10 || s.P50Ms > s.P90Ms || s.P90Ms > s.P99Ms || s.MeanMs < 4.9 || s.MeanMs > 5.1 {
		t.Errorf("summary %+v", s)
	}
	var empty histogram
	if empty.quantile(0.5) != 0 || empty.summary() != (LatencyReport{}) {
		t.Error("empty histogram")
	}
	if n := testing.AllocsPerRun(100, func() { h.record(time.Millisecond) }); n != 0 {
		t.Errorf("record: %v allocs", n)
	}
}
