package harness

import (
	"math/bits"
	"time"
)

// histSub is the number of sub-buckets per power of two (as a bit count):
// 4 bits = 16 sub-buckets, so a bucket is at most 1/16 (6.25%) wide
// relative to its values.
const histSub = 4

// histBuckets covers every uint64: values below 2^(histSub+1) get one
// bucket each, then each power of two gets 2^histSub buckets.
const histBuckets = (64-histSub)<<histSub + 1<<histSub

// histogram is a fixed-size log-linear histogram of durations in
// nanoseconds: recording is an index computation and an increment, so it
// never allocates. It is owned by one goroutine; merge copies between them.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    uint64
	sum    float64 // for the mean; float so long runs cannot overflow
}

// bucketOf returns the bucket index of v: bucket 16·s + (v >> s) for the
// shift s that leaves v >> s in [16, 32), or v itself when v < 32.
func bucketOf(v uint64) int {
	s := bits.Len64(v) - (histSub + 1)
	if s <= 0 {
		return int(v)
	}
	return s<<histSub + int(v>>uint(s))
}

// bucketRange returns the smallest value of bucket i and its width.
func bucketRange(i int) (lo, width uint64) {
	if i < 2<<histSub {
		return uint64(i), 1
	}
	s := uint(i>>histSub - 1)
	m := uint64(i&(1<<histSub-1) | 1<<histSub)
	return m << s, 1 << s
}

// record adds one duration; negative values count as zero.
func (h *histogram) record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
	if v > h.max {
		h.max = v
	}
}

// merge adds o's counts into h.
func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns an estimate of the q-quantile (0 < q ≤ 1): the middle
// of the bucket holding it, never above the exact maximum.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, w := bucketRange(i)
			return time.Duration(min(lo+w/2, h.max))
		}
	}
	return time.Duration(h.max)
}

// summary reports the histogram as a LatencyReport.
func (h *histogram) summary() LatencyReport {
	r := LatencyReport{Count: int64(h.n)}
	if h.n == 0 {
		return r
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	r.P50Ms = ms(h.quantile(0.50))
	r.P90Ms = ms(h.quantile(0.90))
	r.P99Ms = ms(h.quantile(0.99))
	r.MaxMs = ms(time.Duration(h.max))
	r.MeanMs = h.sum / float64(h.n) / 1e6
	return r
}
