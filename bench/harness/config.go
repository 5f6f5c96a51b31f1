package harness

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/atrelay/relay/bench/attack"
	"github.com/atrelay/relay/bench/plc"
)

// Errors of Prepare and Run.
var (
	// ErrBadConfig: a Config or Relay field is out of range; the error names it.
	ErrBadConfig = errors.New("harness: bad config")
	// ErrAlreadyRan: Run was called twice on one Harness (the replay gate
	// opens once).
	ErrAlreadyRan = errors.New("harness: already ran")
	// ErrCrawl: the relay refused a requestCrawl.
	ErrCrawl = errors.New("harness: requestCrawl failed")
	// ErrHostNotConnected: the relay did not subscribe to every replay host
	// within ConnectTimeout.
	ErrHostNotConnected = errors.New("harness: relay did not connect to every replay host")
	// ErrChecksFailed: a consumer saw a gap, a duplicate, a rev going
	// backwards, an undecodable frame, an error frame or an early close.
	ErrChecksFailed = errors.New("harness: stream checks failed")
	// ErrIncomplete: the run ended (timeout or cancel) before every
	// consumer received the expected events.
	ErrIncomplete = errors.New("harness: not every expected event arrived")
)

// DefaultCapture is the capture `relay bench` replays when none is given:
// the reference-PDS recording kept in the repository (internal/testdata,
// see its NOTICE), as a path relative to the root of a checkout.
const DefaultCapture = "internal/testdata/captures/realpds-2"

// Config configures a harness run. Zero fields take the defaults listed.
// It is a plain value: Prepare keeps its own copy.
type Config struct {
	// Capture is a shared-format capture folder (with hosts.json, such as
	// DefaultCapture) or a capture file written by bench/capture.
	Capture string
	// Speed is the pacing: 0 (or less) sends as fast as possible; N > 0
	// follows the recorded schedule N times faster (1 = real speed).
	Speed float64
	// Consumers is the number of subscribeRepos connections (default 10).
	Consumers int
	// RevCheckConsumers is how many of them (the first ones) also check
	// that every DID's commits move its rev forward, which keeps a map of
	// every DID seen (about 100 bytes each, per consumer); 0: all. Every
	// consumer checks seqs and measures delivery times. With a million
	// accounts and 50 consumers, checking in all of them costs the
	// load generator gigabytes and CPU the relay then lacks.
	RevCheckConsumers int
	// Expected is the number of events (frames with a seq) each consumer
	// must receive; 0 means every frame the replay hosts serve, which is
	// what a relay passing everything through emits.
	Expected int64
	// Duration ends the run after this long from the gate release, complete
	// or not (then incompleteness is not a failure); 0 runs until complete.
	Duration time.Duration
	// Timeout ends an unbounded run that has not completed (default 10m).
	Timeout time.Duration
	// ConnectTimeout bounds dialing the consumers and waiting for the relay
	// to subscribe to every replay host (default 30s).
	ConnectTimeout time.Duration
	// SampleInterval is the time between samples (default 1s).
	SampleInterval time.Duration
	// LatencyWarmup leaves out of the latency figures the commits the
	// schedule releases within this long of the gate (they are still
	// delivered and checked): a capture that starts with a burst (account
	// creations) would otherwise put its queueing into the p99 of a paced
	// run. Paced runs only (Speed > 0): at full speed every commit is
	// released at the gate.
	LatencyWarmup time.Duration
	// Progress receives the live one-line progress (\r-rewritten); nil: none.
	Progress io.Writer
	// IngestMetric is the counter (summed over labels) counting events the
	// relay ingests (default relay_upstream_frames_total).
	IngestMetric string
	// NewestSeqMetric is the gauge holding the relay's newest seq, for
	// consumer lag (default relay_store_newest_seq; without it the highest
	// seq any consumer has seen stands in).
	NewestSeqMetric string
	// PipelineMetrics are the relay's histograms (VictoriaMetrics/metrics
	// vmrange buckets, in seconds) of an event's time inside the relay,
	// from its frame's arrival to its publication: the relay's own share
	// of a consumer's delay, apart from the load generator's. Each one the
	// relay exposes is reported over the events published after
	// LatencyWarmup (Report.RelayShare). Default relay_pipeline_seconds
	// and relay_pipeline_identity_cached_seconds (the events that did not
	// wait for their own account's DID document).
	PipelineMetrics []string
	// OffHeapMetrics are the gauges, summed, of memory the relay uses
	// outside the Go heap, for Report.Memory's RSS ÷ memory in use
	// (default relay_memory_c_inuse_bytes: what the C allocator has
	// allocated, Pebble's block cache and memtables in a cgo build).
	OffHeapMetrics []string
	// Relay is the relay under test, used by the package-level Run.
	Relay Relay
	// Attack, when set, runs bench/attack's hostile hosts and floods
	// against the relay from the moment the normal hosts are subscribed
	// until the run ends; Report.Attack has their figures.
	Attack *attack.Options
	// TLS makes the replay hosts serve wss:// and https:// as
	// pds-N.localhost:PORT with a test CA that Prepare generates and
	// writes to a temporary file (Harness.CAFile): the relay under test
	// must trust that file (a test-only setting) besides allowing
	// development hosts. Off: ws:// as localhost:PORT.
	TLS bool
	// PLC is how the fake PLC answers (latency, 500s, timeouts, rate
	// limit); the zero value answers every request at once.
	PLC plc.Behaviour
}

// Relay says where the relay under test is, so the same run can target
// any implementation. It is a plain value owned by the caller.
type Relay struct {
	// API is the relay's public base URL, e.g. http://127.0.0.1:2470;
	// consumers dial its /xrpc/com.atproto.sync.subscribeRepos.
	API string
	// Metrics is its Prometheus page, e.g. http://127.0.0.1:2471/metrics; optional.
	Metrics string
	// AdminToken, when set, is sent as a bearer token with requestCrawl
	// (relays lift new-host limits for admins).
	AdminToken string
	// NoCrawl skips requestCrawl, for a relay already configured with the
	// replay hosts.
	NoCrawl bool
	// CrawlRefusalsOK leaves out a host whose requestCrawl the relay
	// answers 429 (a relay whose memory budget holds fewer hosts than the
	// capture has) instead of failing the run: the run then goes on with
	// the hosts admitted, and needs Config.Duration (it cannot complete).
	CrawlRefusalsOK bool
}

func (c Config) withDefaults() Config {
	if c.Consumers == 0 {
		c.Consumers = 10
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Minute
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 30 * time.Second
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = time.Second
	}
	if c.IngestMetric == "" {
		c.IngestMetric = "relay_upstream_frames_total"
	}
	if c.NewestSeqMetric == "" {
		c.NewestSeqMetric = "relay_store_newest_seq"
	}
	if c.PipelineMetrics == nil {
		c.PipelineMetrics = []string{"relay_pipeline_seconds", "relay_pipeline_identity_cached_seconds"}
	}
	if c.OffHeapMetrics == nil {
		c.OffHeapMetrics = []string{"relay_memory_c_inuse_bytes"}
	}
	return c
}

// validate reports every inconsistency at once.
func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrBadConfig}, args...)...))
	}
	if c.Capture == "" {
		bad("Capture is empty")
	}
	if c.Consumers < 1 || c.Consumers > 10_000 {
		bad("Consumers %d not in 1..10000", c.Consumers)
	}
	if c.Relay.CrawlRefusalsOK && c.Duration <= 0 {
		bad("Relay.CrawlRefusalsOK needs a Duration: a run without the refused hosts never completes")
	}
	if c.RevCheckConsumers < 0 {
		bad("RevCheckConsumers %d is negative", c.RevCheckConsumers)
	}
	if c.Expected < 0 {
		bad("Expected %d is negative", c.Expected)
	}
	if c.Duration < 0 || c.Timeout < 0 || c.ConnectTimeout < 0 {
		bad("negative Duration, Timeout or ConnectTimeout")
	}
	if c.LatencyWarmup < 0 || (c.LatencyWarmup > 0 && c.Speed <= 0) {
		bad("LatencyWarmup %v: want 0, or positive with a paced Speed", c.LatencyWarmup)
	}
	if c.SampleInterval < 10*time.Millisecond {
		bad("SampleInterval %v below 10ms", c.SampleInterval)
	}
	if err := c.PLC.Validate(); err != nil {
		bad("PLC: %v", err)
	}
	return errors.Join(errs...)
}

// subscribeURL turns the relay's API base URL into its ws(s) firehose URL.
func (r Relay) subscribeURL() (string, error) {
	u, err := url.Parse(r.API)
	if err != nil {
		return "", fmt.Errorf("%w: Relay.API %q: %w", ErrBadConfig, r.API, err)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("%w: Relay.API %q: scheme must be http(s) or ws(s)", ErrBadConfig, r.API)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%w: Relay.API %q has no host", ErrBadConfig, r.API)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/xrpc/com.atproto.sync.subscribeRepos"
	u.RawQuery = ""
	return u.String(), nil
}

// httpBase is the API URL with an http(s) scheme, for XRPC calls.
func (r Relay) httpBase() string {
	s := strings.TrimSuffix(r.API, "/")
	switch {
	case strings.HasPrefix(s, "ws://"):
		return "http://" + s[len("ws://"):]
	case strings.HasPrefix(s, "wss://"):
		return "https://" + s[len("wss://"):]
	}
	return s
}
