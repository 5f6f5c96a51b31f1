package harness

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// The page VictoriaMetrics/metrics writes by default parses, and holds
// every series the sampler reads.
func TestParseProcessMetrics(t *testing.T) {
	var page bytes.Buffer
	metrics.WriteProcessMetrics(&page)
	m, err := ParseMetrics(page.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{metricRSS, metricHeapInuse, metricHeapReleased, metricMallocs, metricGCFraction, metricCPU, metricGoroutines, metricStackInuse, metricRSSFile} {
		if v, ok := m.Get(name); !ok || (name == metricRSS && v <= 0) {
			t.Errorf("%s: %v %v", name, v, ok)
		}
	}
}

func TestParseMetricsText(t *testing.T) {
	page := `# HELP relay_x help text
# TYPE relay_x counter
relay_upstream_frames_total{host="a"} 10
relay_upstream_frames_total{host="b b",note="x}\"y"} 5 1700000000000
relay_upstream_frames_totalx 100
relay_store_newest_seq 42

relay_ingest_dropped_total{reason="bad_sig"} 2
relay_reject_total 1
go_dropped_total 9
  gauge_with_spaces   3.5e3  
`
	m, err := ParseMetrics([]byte(page))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := m.Sum("relay_upstream_frames_total"); !ok || v != 15 {
		t.Errorf("sum %v %v", v, ok)
	}
	if _, ok := m.Sum("relay_missing"); ok {
		t.Error("sum of a missing name")
	}
	if v, _ := m.Get("relay_store_newest_seq"); v != 42 {
		t.Errorf("newest %v", v)
	}
	if v, _ := m.Get("gauge_with_spaces"); v != 3500 {
		t.Errorf("spaces %v", v)
	}
	d := m.Drops()
	if len(d) != 2 || d[`relay_ingest_dropped_total{reason="bad_sig"}`] != 2 || d["relay_reject_total"] != 1 {
		t.Errorf("drops %v", d)
	}
	for _, bad := range []string{"name", "name{a=\"b\" 1", "{a=\"b\"} 1", "name notanumber"} {
		if _, err := ParseMetrics([]byte(bad)); !errors.Is(err, ErrMetricsLine) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := ParseMetrics(make([]byte, MaxMetricsBytes+1)); !errors.Is(err, ErrMetricsTooLarge) {
		t.Errorf("large: %v", err)
	}
}

func TestScrapeStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	if _, err := scrape(t.Context(), srv.Client(), srv.URL); !errors.Is(err, ErrMetricsStatus) {
		t.Errorf("status: %v", err)
	}
}

func FuzzParseMetrics(f *testing.F) {
	var page bytes.Buffer
	metrics.WriteProcessMetrics(&page)
	f.Add(page.Bytes())
	f.Add([]byte("a{b=\"c\\\"}\"} 1 2\n# x\nb 3"))
	f.Add([]byte("x{ 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMetrics(b)
		if err != nil {
			return
		}
		for k := range m {
			if k == "" || strings.ContainsAny(k[:1], " {#") {
				t.Fatalf("bad key %q", k)
			}
			m.Sum(k)
		}
		m.Drops()
	})
}

// TestSampleCPUNeedsInterval: a sample taken milliseconds after the last
// one (the final sample of a run) reports no CPU rate instead of one clock
// tick divided by a few milliseconds.
func TestSampleCPUNeedsInterval(t *testing.T) {
	s := &sampler{cfg: Config{SampleInterval: time.Second}.withDefaults(), epoch: time.Now().Add(-time.Minute),
		gate: new(atomic.Int64), source: ingestFromMetrics}
	s.prev = point{at: time.Since(s.epoch) - 5*time.Millisecond, cpu: 1.00}
	if smp := s.take(Metrics{metricCPU: 1.01}); smp.CPUCores != 0 {
		t.Fatalf("5 ms after the last sample: %v cores, want none", smp.CPUCores)
	}
	s.prev = point{at: time.Since(s.epoch) - time.Second, cpu: 1.00}
	if smp := s.take(Metrics{metricCPU: 1.50}); smp.CPUCores < 0.4 || smp.CPUCores > 0.6 {
		t.Fatalf("a second after the last sample: %v cores, want about 0.5", smp.CPUCores)
	}
}

// HistogramSince counts only what a VictoriaMetrics histogram gained
// between two scrapes, and reads quantiles from its vmrange buckets.
func TestHistogramSince(t *testing.T) {
	set := metrics.NewSet()
	h := set.NewHistogram("relay_pipeline_seconds")
	page := func() Metrics {
		var b bytes.Buffer
		set.WritePrometheus(&b)
		m, err := ParseMetrics(b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if _, ok := page().HistogramSince(nil, "relay_pipeline_seconds"); ok {
		t.Fatal("an empty histogram reported")
	}
	for range 100 {
		h.Update(1) // before the warm-up: left out
	}
	warm := page()
	for range 90 {
		h.Update(0.010)
	}
	for range 9 {
		h.Update(0.100)
	}
	h.Update(2)
	end := page()
	// Each figure is its bucket's upper bound: at most ~12 % above.
	near := func(got, want float64) bool { return got >= want && got <= want*1.13 }
	r, ok := end.HistogramSince(warm, "relay_pipeline_seconds")
	if !ok || r.Count != 100 || !near(r.P50Ms, 10) || !near(r.P90Ms, 10) || !near(r.P99Ms, 100) || !near(r.MaxMs, 2000) {
		t.Fatalf("since the warm-up: %+v %v", r, ok)
	}
	if mean := (90*10 + 9*100 + 2000) / 100.0; r.MeanMs < mean-0.01 || r.MeanMs > mean+0.01 {
		t.Fatalf("mean %v, want %v", r.MeanMs, mean)
	}
	if all, _ := end.HistogramSince(nil, "relay_pipeline_seconds"); all.Count != 200 || !near(all.P50Ms, 1000) {
		t.Fatalf("from the start: %+v", all)
	}
	if _, ok := end.HistogramSince(warm, "relay_other_seconds"); ok {
		t.Fatal("a histogram the page does not have reported")
	}
}

// The memory ratios leave out the samples before the warm-up and divide
// RSS by the heap, then by everything the relay uses.
func TestMemoryReport(t *testing.T) {
	samples := []Sample{
		{T: 1, RSSBytes: 1000, HeapInuseBytes: 100}, // warm-up
		{T: 10, RSSBytes: 150, HeapInuseBytes: 100, StackInuseBytes: 10, OffHeapBytes: 20, RSSFileBytes: 20},
		{T: 11, RSSBytes: 200, HeapInuseBytes: 100, StackInuseBytes: 10, OffHeapBytes: 20, RSSFileBytes: 20},
		{T: 12}, // a failed scrape
	}
	m := memoryReport(samples, 5*time.Second)
	if m == nil || m.Samples != 2 {
		t.Fatalf("%+v", m)
	}
	if m.RSSOverHeap != (RatioReport{P50: 2, P90: 2, Max: 2}) || m.RSSOverInUse.Max != 200.0/150 || m.RSSOverInUse.P50 != 200.0/150 {
		t.Fatalf("%+v", m)
	}
	if memoryReport(samples[:1], 5*time.Second) != nil {
		t.Fatal("a report without samples after the warm-up")
	}
}
