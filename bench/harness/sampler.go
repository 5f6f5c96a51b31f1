package harness

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// Relay metric names read at every sample: what VictoriaMetrics/metrics
// WriteProcessMetrics exposes by default (go_metrics.go,
// process_metrics_linux.go).
const (
	metricRSS          = "process_resident_memory_bytes"
	metricHeapInuse    = "go_memstats_heap_inuse_bytes"
	metricHeapReleased = "go_memstats_heap_released_bytes"
	metricMallocs      = "go_memstats_mallocs_total"
	metricGCFraction   = "go_memstats_gc_cpu_fraction"
	metricCPU          = "process_cpu_seconds_total"
	metricGoroutines   = "go_goroutines"
	metricStackInuse   = "go_memstats_stack_inuse_bytes"
	metricRSSFile      = "process_resident_memory_file_bytes"
)

// Ingest sources named in Report.IngestSource.
const (
	ingestFromMetrics   = "metrics"
	ingestFromConsumer0 = "consumer0"
)

// sampler takes a Sample every SampleInterval and writes the progress line.
// Static fields are set by newSampler; the rest is owned by the goroutine
// running loop, then by Run once loop has returned.
type sampler struct {
	cfg       Config
	url       string // relay metrics URL; empty: consumer figures only
	client    *http.Client
	consumers []*consumer
	expect    int64
	epoch     time.Time
	gate      *atomic.Int64

	source  string // ingestFromMetrics or ingestFromConsumer0, fixed by baseline
	prev    point
	samples []Sample
	last    Metrics // latest successful scrape
	// warm is the first successful scrape at or after Config.LatencyWarmup
	// (nil without a warm-up): Report.RelayShare counts the histograms'
	// observations since it, or since the relay started when nil.
	warm         Metrics
	scrapeErrors int64
	lastErr      string
	lastLen      int // length of the last progress line
}

// point is the cumulative counters at one instant.
type point struct {
	at        time.Duration // since epoch
	ingested  float64
	delivered int64
	bytes     int64
	mallocs   float64
	cpu       float64
}

func newSampler(cfg Config, url string, client *http.Client, consumers []*consumer, expect int64, epoch time.Time, gate *atomic.Int64) *sampler {
	return &sampler{cfg: cfg, url: url, client: client, consumers: consumers, expect: expect, epoch: epoch, gate: gate, source: ingestFromConsumer0}
}

// baseline takes the t=0 sample before the gate opens and picks the ingest source.
func (s *sampler) baseline(ctx context.Context) {
	m := s.scrape(ctx)
	if _, ok := m.Sum(s.cfg.IngestMetric); ok {
		s.source = ingestFromMetrics
	}
	smp := s.take(m)
	smp.T = 0
	s.samples = append(s.samples, smp)
}

// loop samples until ctx ends.
func (s *sampler) loop(ctx context.Context) {
	t := time.NewTicker(s.cfg.SampleInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		smp := s.take(s.scrape(ctx))
		s.samples = append(s.samples, smp)
		s.progress(smp)
	}
}

// final takes the closing sample.
func (s *sampler) final(ctx context.Context) {
	smp := s.take(s.scrape(ctx))
	s.samples = append(s.samples, smp)
	s.progress(smp)
}

// scrape returns the relay's metrics, or nil when there are none.
func (s *sampler) scrape(ctx context.Context) Metrics {
	if s.url == "" {
		return nil
	}
	m, err := scrape(ctx, s.client, s.url)
	if err != nil {
		if ctx.Err() != nil {
			// The run ended while this scrape was in flight: not the
			// relay's failure.
			return nil
		}
		s.scrapeErrors++
		s.lastErr = err.Error()
		return nil
	}
	s.last = m
	return m
}

// take computes one sample from m (nil when the scrape failed) and the
// consumers' counters, and advances prev.
func (s *sampler) take(m Metrics) Sample {
	now := time.Since(s.epoch)
	cur := point{at: now, ingested: s.prev.ingested, mallocs: s.prev.mallocs, cpu: s.prev.cpu}
	var newest, minSeq int64
	for i, c := range s.consumers {
		cur.delivered += c.events.Load()
		cur.bytes += c.bytes.Load()
		seq := c.lastSeq.Load()
		newest = max(newest, seq)
		if i == 0 || seq < minSeq {
			minSeq = seq
		}
	}
	smp := Sample{T: (now - time.Duration(s.gate.Load())).Seconds(), EventsDelivered: cur.delivered}
	if s.source == ingestFromConsumer0 {
		cur.ingested = float64(s.consumers[0].events.Load())
	}
	if m != nil {
		if v, ok := m.Sum(s.cfg.IngestMetric); ok && s.source == ingestFromMetrics {
			cur.ingested = v
		}
		if v, ok := m.Get(s.cfg.NewestSeqMetric); ok {
			newest = int64(v)
			smp.RelayNewestSeq = newest
		}
		// Not the baseline (prev.at 0): it comes before the gate.
		if s.warm == nil && s.cfg.LatencyWarmup > 0 && s.prev.at > 0 && smp.T >= s.cfg.LatencyWarmup.Seconds() {
			s.warm = m
		}
		smp.RSSBytes, _ = m.Get(metricRSS)
		smp.HeapInuseBytes, _ = m.Get(metricHeapInuse)
		smp.StackInuseBytes, _ = m.Get(metricStackInuse)
		smp.RSSFileBytes, _ = m.Get(metricRSSFile)
		for _, name := range s.cfg.OffHeapMetrics {
			v, _ := m.Get(name)
			smp.OffHeapBytes += v
		}
		smp.HeapReleasedBytes, _ = m.Get(metricHeapReleased)
		smp.GCCPUFraction, _ = m.Get(metricGCFraction)
		smp.Goroutines, _ = m.Get(metricGoroutines)
		if v, ok := m.Get(metricMallocs); ok {
			cur.mallocs = v
		}
		if v, ok := m.Get(metricCPU); ok {
			cur.cpu = v
		}
		for _, v := range m.Drops() {
			smp.DropsTotal += v
		}
	}
	smp.IngestedTotal = cur.ingested
	smp.MaxLag = max(newest-minSeq, 0)
	if dt := (cur.at - s.prev.at).Seconds(); s.prev.at > 0 && dt > 0 {
		di := cur.ingested - s.prev.ingested
		smp.IngestedPerSec = di / dt
		smp.DeliveredPerSec = float64(cur.delivered-s.prev.delivered) / dt
		smp.DeliveredBytesPerSec = float64(cur.bytes-s.prev.bytes) / dt
		// process_cpu_seconds_total moves in clock ticks (10 ms): over
		// the few milliseconds between the last periodic sample and the
		// final one, one tick reads as several cores.
		if dt >= s.cfg.SampleInterval.Seconds()/2 {
			smp.CPUCores = (cur.cpu - s.prev.cpu) / dt
		}
		if di > 0 {
			smp.AllocsPerEvent = (cur.mallocs - s.prev.mallocs) / di
		}
	}
	s.prev = cur
	return smp
}

// progress rewrites the live progress line.
func (s *sampler) progress(smp Sample) {
	w := s.cfg.Progress
	if w == nil {
		return
	}
	done := smp.EventsDelivered / int64(len(s.consumers))
	line := fmt.Sprintf("%7.1fs  ingest %8.0f ev/s  deliver %9.0f ev/s  events %d/%d  lag %d",
		smp.T, smp.IngestedPerSec, smp.DeliveredPerSec, done, s.expect, smp.MaxLag)
	if smp.RSSBytes > 0 {
		line += fmt.Sprintf("  rss %s  heap %s  cpu %.2f", mib(smp.RSSBytes), mib(smp.HeapInuseBytes), smp.CPUCores)
	}
	// Pad over the previous line instead of an erase escape, so the
	// output also reads well when it goes to a file.
	pad := max(s.lastLen-len(line), 0)
	s.lastLen = len(line)
	fmt.Fprintf(w, "\r%s%*s", line, pad, "")
}

// mib formats a byte count as MiB.
func mib(b float64) string { return fmt.Sprintf("%.1fMiB", b/(1<<20)) }
