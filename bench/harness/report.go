package harness

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/atrelay/relay/bench/attack"
	"github.com/atrelay/relay/bench/plc"
)

// Report is the outcome of a run: the verdict, the totals and the
// per-second time series (for charts). It marshals to the JSON written
// by RunCLI's --json. It is a plain value owned by the caller; Run builds
// it after every goroutine of the run has stopped.
type Report struct {
	Capture      string   `json:"capture"`
	Started      string   `json:"started"` // RFC 3339, when the gate opened
	RelayAPI     string   `json:"relayApi"`
	RelayMetrics string   `json:"relayMetrics,omitempty"`
	PLCURL       string   `json:"plcUrl"`
	Hosts        []string `json:"hosts"`
	// HostsRefused counts the hosts left out because the relay answered
	// their requestCrawl 429 (Relay.CrawlRefusalsOK).
	HostsRefused int `json:"hostsRefused,omitempty"`
	// TLS says the replay hosts served wss:// (Config.TLS).
	TLS bool `json:"tls"`
	// PLCBehaviour is the fake PLC's behaviour (plc.Behaviour.String; ""
	// answers at once) and PLCCounters what it answered during the run.
	PLCBehaviour string       `json:"plcBehaviour,omitempty"`
	PLCCounters  plc.Counters `json:"plcCounters"`
	// Pacing is "max" (as fast as possible) or "x<speed>" (scaled).
	Pacing string `json:"pacing"`
	// LatencyFrom says what latency is measured from: "schedule" (each
	// commit's scheduled release; "schedule, after the first D" with
	// Config.LatencyWarmup) or "gate" (the single release under max).
	LatencyFrom string `json:"latencyFrom"`
	Consumers   int    `json:"consumers"`
	// ExpectedEvents is what each consumer had to receive.
	ExpectedEvents int64 `json:"expectedEvents"`
	// Ended is why the run stopped: complete, duration, timeout or cancelled.
	Ended    string   `json:"ended"`
	Complete bool     `json:"complete"` // every consumer received ExpectedEvents
	OK       bool     `json:"ok"`       // Complete (or Duration-bounded) and no failure
	Failures []string `json:"failures"`

	ElapsedSeconds float64 `json:"elapsedSeconds"` // gate release to stop
	// EventsPerSec is the slowest consumer's events over ElapsedSeconds:
	// the end-to-end throughput of the relay for this run.
	EventsPerSec float64 `json:"eventsPerSec"`
	// DeliveredEventsPerSec and DeliveredBytesPerSec sum all consumers.
	DeliveredEventsPerSec float64 `json:"deliveredEventsPerSec"`
	DeliveredBytesPerSec  float64 `json:"deliveredBytesPerSec"`
	// IngestSource is where Sample.IngestedPerSec comes from: "metrics"
	// (Config.IngestMetric) or "consumer0".
	IngestSource string        `json:"ingestSource"`
	Latency      LatencyReport `json:"latency"` // all consumers merged
	// LatencyKnown is Latency without the commits that come less than
	// 2 s (coldWindow, at the replay's pace) after their account's first
	// frame in the capture (a relay resolves those accounts' DID documents
	// first, and their next frames wait for the same document): the
	// relay's share of the delay with the directory's taken out, as far
	// as the capture tells.
	LatencyKnown LatencyReport `json:"latencyKnown"`
	// RelayShare is, for each Config.PipelineMetrics histogram the relay
	// exposes, its events published after the warm-up: the relay's own
	// share of the delay (quantiles are bucket upper bounds).
	RelayShare map[string]LatencyReport `json:"relayShare,omitempty"`
	Peak       PeakReport               `json:"peak"`
	// Memory is how closely the relay's RSS followed the memory it uses
	// after the warm-up; nil without relay metrics.
	Memory *MemoryReport `json:"memory,omitempty"`
	// Drops is the final value of each relay drop/reject counter series.
	Drops           map[string]float64 `json:"drops,omitempty"`
	ScrapeErrors    int64              `json:"scrapeErrors"`
	LastScrapeError string             `json:"lastScrapeError,omitempty"`

	// Attack is what the attackers of Config.Attack did; nil without them.
	Attack *attack.Stats `json:"attack,omitempty"`

	ConsumerResults []ConsumerReport `json:"consumerResults"`
	Samples         []Sample         `json:"samples"`
}

// LatencyReport summarises commit latencies (send to receive); a plain value.
type LatencyReport struct {
	Count  int64   `json:"count"`
	P50Ms  float64 `json:"p50Ms"`
	P90Ms  float64 `json:"p90Ms"`
	P99Ms  float64 `json:"p99Ms"`
	MaxMs  float64 `json:"maxMs"`
	MeanMs float64 `json:"meanMs"`
}

// PeakReport holds the largest sampled relay figures; a plain value.
type PeakReport struct {
	RSSBytes          float64 `json:"rssBytes"`
	HeapInuseBytes    float64 `json:"heapInuseBytes"`
	HeapReleasedBytes float64 `json:"heapReleasedBytes"`
	CPUCores          float64 `json:"cpuCores"`
	MaxLag            int64   `json:"maxLag"`
}

// MemoryReport compares the relay's resident memory with what it uses,
// over the samples after the warm-up; a plain value.
type MemoryReport struct {
	Samples int `json:"samples"`
	// RSSOverHeap is RSS ÷ Go heap in use.
	RSSOverHeap RatioReport `json:"rssOverHeap"`
	// RSSOverInUse is RSS ÷ (Go heap in use + goroutine stacks + the
	// off-heap gauges + the binary's resident pages): what the process
	// holds beyond the memory it uses (idle heap not yet returned to the
	// OS, runtime metadata, the C allocator's slack), which RSSOverHeap
	// mixes with off-heap memory the relay does use.
	RSSOverInUse RatioReport `json:"rssOverInUse"`
}

// RatioReport is the spread of a ratio over samples; a plain value.
type RatioReport struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	Max float64 `json:"max"`
}

// ratioReport summarises rs, which it sorts.
func ratioReport(rs []float64) RatioReport {
	if len(rs) == 0 {
		return RatioReport{}
	}
	sort.Float64s(rs)
	at := func(q float64) float64 { return rs[min(len(rs)-1, int(q*float64(len(rs))))] }
	return RatioReport{P50: at(0.5), P90: at(0.9), Max: rs[len(rs)-1]}
}

// memoryReport computes Report.Memory from the samples at or after warm.
func memoryReport(samples []Sample, warm time.Duration) *MemoryReport {
	var overHeap, overInUse []float64
	for _, smp := range samples {
		if smp.T < warm.Seconds() || smp.RSSBytes <= 0 || smp.HeapInuseBytes <= 0 {
			continue
		}
		overHeap = append(overHeap, smp.RSSBytes/smp.HeapInuseBytes)
		inUse := smp.HeapInuseBytes + smp.StackInuseBytes + smp.OffHeapBytes + smp.RSSFileBytes
		overInUse = append(overInUse, smp.RSSBytes/inUse)
	}
	if len(overHeap) == 0 {
		return nil
	}
	return &MemoryReport{Samples: len(overHeap), RSSOverHeap: ratioReport(overHeap), RSSOverInUse: ratioReport(overInUse)}
}

// ConsumerReport is one consumer's counts and check results; a plain value.
type ConsumerReport struct {
	ID       int   `json:"id"`
	Events   int64 `json:"events"` // frames with a seq
	Frames   int64 `json:"frames"` // every binary message
	Bytes    int64 `json:"bytes"`
	FirstSeq int64 `json:"firstSeq"`
	LastSeq  int64 `json:"lastSeq"`
	// Gaps counts jumps of the seq by more than one; Missing the seqs skipped.
	Gaps    int64 `json:"gaps"`
	Missing int64 `json:"missing"`
	// Backward counts seqs that did not rise (duplicates or reordering).
	Backward int64 `json:"backward"`
	// RevBackward counts commits whose rev did not rise for their DID.
	RevBackward      int64         `json:"revBackward"`
	NoSeq            int64         `json:"noSeq"` // #info and other frames without a seq
	Undecodable      int64         `json:"undecodable"`
	FirstUndecodable string        `json:"firstUndecodable,omitempty"`
	ErrorFrames      []string      `json:"errorFrames,omitempty"`
	DIDs             int           `json:"dids"`             // 0 for a consumer that does not check revs (Config.RevCheckConsumers)
	LatencyUnmatched int64         `json:"latencyUnmatched"` // commits not in the capture
	Latency          LatencyReport `json:"latency"`
	EndError         string        `json:"endError,omitempty"` // why the stream ended early
}

// Sample is one per-interval measurement. Rates are over the interval
// before it; relay figures are absent (zero) without a metrics URL. A
// plain value, written once by the sampler.
type Sample struct {
	T                    float64 `json:"t"` // seconds since the gate opened
	IngestedPerSec       float64 `json:"ingestedPerSec"`
	IngestedTotal        float64 `json:"ingestedTotal"`
	DeliveredPerSec      float64 `json:"deliveredPerSec"` // summed over consumers
	DeliveredBytesPerSec float64 `json:"deliveredBytesPerSec"`
	EventsDelivered      int64   `json:"eventsDelivered"` // summed over consumers
	RelayNewestSeq       int64   `json:"relayNewestSeq,omitempty"`
	MaxLag               int64   `json:"maxLag"` // newest seq minus the slowest consumer's
	RSSBytes             float64 `json:"rssBytes,omitempty"`
	HeapInuseBytes       float64 `json:"heapInuseBytes,omitempty"`
	HeapReleasedBytes    float64 `json:"heapReleasedBytes,omitempty"`
	StackInuseBytes      float64 `json:"stackInuseBytes,omitempty"`
	RSSFileBytes         float64 `json:"rssFileBytes,omitempty"` // file-backed resident pages: the binary's
	OffHeapBytes         float64 `json:"offHeapBytes,omitempty"` // Config.OffHeapMetrics summed
	GCCPUFraction        float64 `json:"gcCpuFraction,omitempty"`
	CPUCores             float64 `json:"cpuCores,omitempty"`
	AllocsPerEvent       float64 `json:"allocsPerEvent,omitempty"`
	Goroutines           float64 `json:"goroutines,omitempty"`
	DropsTotal           float64 `json:"dropsTotal,omitempty"`
}

// report assembles the Report once the consumers and sampler have stopped.
func (h *Harness) report(relay Relay, consumers []*consumer, s *sampler, ended string, elapsed time.Duration) Report {
	r := Report{
		Capture: h.capName, RelayAPI: relay.API, RelayMetrics: relay.Metrics,
		PLCURL: h.fleet.PLCURL, Hosts: h.Hostnames(), HostsRefused: len(h.refused),
		TLS: h.cfg.TLS, PLCBehaviour: h.cfg.PLC.String(), PLCCounters: h.fleet.PLC.Counters(),
		Pacing: "max", LatencyFrom: "gate",
		Consumers: len(consumers), ExpectedEvents: h.expect,
		Ended: ended, Complete: true, Failures: []string{},
		ElapsedSeconds: elapsed.Seconds(),
		IngestSource:   s.source,
		ScrapeErrors:   s.scrapeErrors, LastScrapeError: s.lastErr,
		Samples: s.samples,
	}
	r.Started = consumers[0].epoch.Add(time.Duration(consumers[0].gate.Load())).UTC().Format(time.RFC3339Nano)
	if h.cfg.Speed > 0 {
		r.Pacing, r.LatencyFrom = fmt.Sprintf("x%g", h.cfg.Speed), "schedule"
		if h.cfg.LatencyWarmup > 0 {
			r.LatencyFrom = fmt.Sprintf("schedule, after the first %v", h.cfg.LatencyWarmup)
		}
	}
	if s.last != nil {
		r.Drops = s.last.Drops()
		for _, name := range h.cfg.PipelineMetrics {
			if lr, ok := s.last.HistogramSince(s.warm, name); ok {
				if r.RelayShare == nil {
					r.RelayShare = map[string]LatencyReport{}
				}
				r.RelayShare[name] = lr
			}
		}
	}
	r.Memory = memoryReport(s.samples, h.cfg.LatencyWarmup)
	fail := func(format string, args ...any) { r.Failures = append(r.Failures, fmt.Sprintf(format, args...)) }
	var all, known histogram
	slowest := int64(-1)
	var delivered, bytes int64
	for _, c := range consumers {
		cr := ConsumerReport{
			ID: c.id, Events: c.events.Load(), Frames: c.frames.Load(), Bytes: c.bytes.Load(),
			FirstSeq: c.firstSeq, LastSeq: c.lastSeq.Load(),
			Gaps: c.gaps, Missing: c.missing, Backward: c.backward, RevBackward: c.revBad,
			NoSeq: c.noSeq, Undecodable: c.badFrames, ErrorFrames: c.errFrames,
			DIDs: len(c.dids), LatencyUnmatched: c.unmatched, Latency: c.hist.summary(),
		}
		if c.firstBad != nil {
			cr.FirstUndecodable = c.firstBad.Error()
		}
		if c.endErr != nil {
			cr.EndError = c.endErr.Error()
		}
		all.merge(&c.hist)
		known.merge(&c.histKnown)
		delivered += cr.Events
		bytes += cr.Bytes
		if slowest < 0 || cr.Events < slowest {
			slowest = cr.Events
		}
		if cr.Events < h.expect {
			r.Complete = false
		}
		if cr.Gaps > 0 {
			fail("consumer %d: %d seq gaps (%d seqs missing)", c.id, cr.Gaps, cr.Missing)
		}
		if cr.Backward > 0 {
			fail("consumer %d: seq did not rise %d times (duplicates or reordering)", c.id, cr.Backward)
		}
		if cr.RevBackward > 0 {
			fail("consumer %d: %d commits with a rev not above the DID's previous one", c.id, cr.RevBackward)
		}
		if cr.Undecodable > 0 {
			fail("consumer %d: %d undecodable frames (first: %s)", c.id, cr.Undecodable, cr.FirstUndecodable)
		}
		if len(cr.ErrorFrames) > 0 {
			fail("consumer %d: error frames %v", c.id, cr.ErrorFrames)
		}
		if cr.EndError != "" {
			fail("consumer %d: stream ended after %d events: %s", c.id, cr.Events, cr.EndError)
		}
		if cr.Events > h.expect {
			fail("consumer %d: %d events, more than the %d expected", c.id, cr.Events, h.expect)
		}
		r.ConsumerResults = append(r.ConsumerResults, cr)
	}
	r.Latency, r.LatencyKnown = all.summary(), known.summary()
	if e := elapsed.Seconds(); e > 0 {
		r.EventsPerSec = float64(slowest) / e
		r.DeliveredEventsPerSec = float64(delivered) / e
		r.DeliveredBytesPerSec = float64(bytes) / e
	}
	for _, smp := range r.Samples {
		r.Peak.RSSBytes = max(r.Peak.RSSBytes, smp.RSSBytes)
		r.Peak.HeapInuseBytes = max(r.Peak.HeapInuseBytes, smp.HeapInuseBytes)
		r.Peak.HeapReleasedBytes = max(r.Peak.HeapReleasedBytes, smp.HeapReleasedBytes)
		r.Peak.CPUCores = max(r.Peak.CPUCores, smp.CPUCores)
		r.Peak.MaxLag = max(r.Peak.MaxLag, smp.MaxLag)
	}
	r.OK = len(r.Failures) == 0 && (r.Complete || ended == "duration")
	return r
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadReport reads a report written by WriteJSON.
func ReadReport(path string) (Report, error) {
	var r Report
	raw, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// WriteSummary writes the report as a readable table.
func (r *Report) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	verdict := "PASS"
	if !r.OK {
		verdict = "FAIL"
	}
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	row("verdict", "%s (ended: %s)", verdict, r.Ended)
	row("capture", "%s", r.Capture)
	row("relay", "%s  metrics: %s", r.RelayAPI, orNone(r.RelayMetrics))
	row("pacing", "%s  consumers: %d  expected events: %d", r.Pacing, r.Consumers, r.ExpectedEvents)
	hosts := "ws://"
	if r.TLS {
		hosts = "wss:// (test CA)"
	}
	if r.HostsRefused > 0 {
		hosts += fmt.Sprintf(", %d refused by the relay (429) and left out", r.HostsRefused)
	}
	row("hosts", "%d over %s", len(r.Hosts), hosts)
	c := r.PLCCounters
	row("fake PLC", "%s: %d requests, %d served, %d not found, %d failed (500), %d timed out, %d rate-limited (429)",
		orDefault(r.PLCBehaviour, "instant"), c.Requests, c.Served, c.NotFound, c.Failures, c.TimedOut, c.RateLimited)
	row("elapsed", "%.2f s", r.ElapsedSeconds)
	row("throughput", "%.0f events/s end to end (slowest consumer)", r.EventsPerSec)
	row("delivered", "%.0f events/s, %.1f MiB/s over all consumers", r.DeliveredEventsPerSec, r.DeliveredBytesPerSec/(1<<20))
	row("latency", "p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms  (%d commits, from %s)",
		r.Latency.P50Ms, r.Latency.P90Ms, r.Latency.P99Ms, r.Latency.MaxMs, r.Latency.Count, r.LatencyFrom)
	if k := r.LatencyKnown; k.Count > 0 && k.Count < r.Latency.Count {
		row("  known accounts", "p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms  (%d commits: account seen %v before)",
			k.P50Ms, k.P90Ms, k.P99Ms, k.MaxMs, k.Count, coldWindow)
	}
	for _, name := range sortedKeys(r.RelayShare) {
		l := r.RelayShare[name]
		row("relay's share", "p50 ≤ %.0f ms  p90 ≤ %.0f ms  p99 ≤ %.0f ms  max ≤ %.0f ms  mean %.1f ms  (%d events, %s)",
			l.P50Ms, l.P90Ms, l.P99Ms, l.MaxMs, l.MeanMs, l.Count, name)
	}
	if r.Peak.RSSBytes > 0 {
		row("relay peak", "rss %s  heap in use %s  heap released %s  cpu %.2f cores",
			mib(r.Peak.RSSBytes), mib(r.Peak.HeapInuseBytes), mib(r.Peak.HeapReleasedBytes), r.Peak.CPUCores)
	}
	if m := r.Memory; m != nil {
		row("relay memory", "rss ÷ heap in use p50 %.2f  p90 %.2f  max %.2f;  rss ÷ in use (heap, stacks, off-heap, binary) p50 %.2f  p90 %.2f  max %.2f  (%d samples)",
			m.RSSOverHeap.P50, m.RSSOverHeap.P90, m.RSSOverHeap.Max, m.RSSOverInUse.P50, m.RSSOverInUse.P90, m.RSSOverInUse.Max, m.Samples)
	}
	row("max lag", "%d events", r.Peak.MaxLag)
	if a := r.Attack; a != nil {
		for _, k := range sortedKeys(a.Hosts) {
			row("attack host", "%s: %d connections, %s sent", k, a.Hosts[k].Conns, mib(float64(a.Hosts[k].Bytes)))
		}
		row("attack did:web", "%d connections to never-answering document servers", a.BlackholeConns)
		row("attack crawl", "requestCrawl answers by status: %v", a.Crawl)
		row("attack consumers", "%d admitted, refused by status: %v", a.ConsumersAdmitted, a.ConsumersRefused)
		row("attack jetstream", "%d subscribers admitted, refused by status: %v", a.SubscribersAdmitted, a.SubscribersRefused)
	}
	keys := make([]string, 0, len(r.Drops))
	for k := range r.Drops {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if r.Drops[k] != 0 {
			row("drops", "%s = %.0f", k, r.Drops[k])
		}
	}
	if r.ScrapeErrors > 0 {
		row("scrape errors", "%d (last: %s)", r.ScrapeErrors, r.LastScrapeError)
	}
	for _, f := range r.Failures {
		row("failure", "%s", f)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "consumer\tevents\tbytes\tfirst seq\tlast seq\tgaps\tbackward\trev back\tp50 ms\tp99 ms\tmax ms")
	for _, c := range r.ConsumerResults {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\n", c.ID, c.Events, c.Bytes, c.FirstSeq,
			c.LastSeq, c.Gaps, c.Backward, c.RevBackward, c.Latency.P50Ms, c.Latency.P99Ms, c.Latency.MaxMs)
	}
	return tw.Flush()
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
