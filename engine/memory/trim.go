package memory

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
)

// ErrTrimmerRunning is returned by [Trimmer.Start] when it is already running.
var ErrTrimmerRunning = errors.New("memory: trimmer already started")

// pollsPerInterval is how many times per TrimInterval the trimmer samples the
// heap: often enough that a spike is returned soon after the interval allows,
// rarely enough that sampling (a runtime/metrics read, no stop-the-world)
// costs nothing measurable.
const pollsPerInterval = 4

// Indexes into Trimmer.samples.
const (
	sampleHeapFree = iota
	sampleHeapReleased
	numTrimSamples
)

// Trimmer returns idle heap to the operating system with debug.FreeOSMemory
// when the heap the runtime holds idle but has not released
// (HeapIdle − HeapReleased, runtime/metrics /memory/classes/heap/free:bytes)
// exceeds a threshold, at most once per interval. The runtime's background
// scavenger does the same slowly; the trimmer catches spikes, such as a burst
// of large frames, that would otherwise keep RSS high for minutes.
//
// Idle heap appears all at once, when a collection frees spans, so besides
// polling the trimmer is woken at the end of every GC cycle (a finalizer on a
// sentinel object, re-armed each cycle) and trims then: RSS comes back down to
// the heap in use within milliseconds of a collection instead of staying up
// for a poll period. The forced collection inside FreeOSMemory wakes it too;
// that check finds nothing idle and does nothing.
//
// FreeOSMemory forces a full collection, so the interval also bounds the CPU
// the trimmer can cost. Start and Stop are safe for concurrent use; check is
// called only by the trimmer's own goroutine (or directly by tests when the
// trimmer is not started).
type Trimmer struct {
	// Static after NewTrimmer.
	interval  time.Duration
	threshold uint64
	log       *slog.Logger

	// Owned by the goroutine running check.
	samples [numTrimSamples]metrics.Sample
	lastRun time.Time // zero: never trimmed

	// gcDone receives (without blocking) one token per finished GC cycle
	// while the trimmer runs; buffered 1 so a burst collapses into one check.
	gcDone chan struct{}

	// Atomics, written by check, read by the metrics writer.
	checks        atomic.Uint64
	runs          atomic.Uint64
	nanos         atomic.Int64 // total time spent in FreeOSMemory
	lastNanos     atomic.Int64
	returnedBytes atomic.Uint64
	lastFree      atomic.Uint64

	// Lifecycle, guarded by mu.
	mu   sync.Mutex
	stop chan struct{} // nil when not running
	done chan struct{}
}

// NewTrimmer returns a stopped trimmer using cfg's TrimInterval and
// TrimThreshold (zero fields take their defaults) and registers its metrics
// (relay_memory_trim_*) on set. Register one trimmer per set. A nil log
// discards the trimmer's messages.
func NewTrimmer(cfg Config, set *vm.Set, log *slog.Logger) (*Trimmer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	t := &Trimmer{
		interval:  cfg.TrimInterval,
		threshold: uint64(cfg.TrimThreshold),
		log:       log,
		gcDone:    make(chan struct{}, 1),
	}
	t.samples[sampleHeapFree].Name = "/memory/classes/heap/free:bytes"
	t.samples[sampleHeapReleased].Name = "/memory/classes/heap/released:bytes"
	set.RegisterMetricsWriter(t.writeMetrics)
	return t, nil
}

// Start launches the trimmer's goroutine. It returns ErrTrimmerRunning if the
// trimmer is already running; a stopped trimmer may be started again.
func (t *Trimmer) Start() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stop != nil {
		return ErrTrimmerRunning
	}
	t.stop, t.done = make(chan struct{}), make(chan struct{})
	armGCNotice(t.gcDone, t.stop)
	go t.run(t.stop, t.done)
	return nil
}

// gcSentinel is allocated only to be collected: its finalizer marks the end
// of a GC cycle. 32 bytes keeps it out of the tiny allocator, whose objects
// may share a block with live ones and never be finalized.
type gcSentinel struct{ _ [4]uint64 }

// armGCNotice allocates a sentinel that, once a collection finds it
// unreachable, sends a token on notify (dropped if one is pending) and arms
// the next sentinel, until stop is closed. Finalizers run on the runtime's
// finalizer goroutine, so this must not block: the send is non-blocking.
func armGCNotice(notify chan<- struct{}, stop <-chan struct{}) {
	runtime.SetFinalizer(new(gcSentinel), func(*gcSentinel) {
		select {
		case <-stop:
			return
		default:
		}
		select {
		case notify <- struct{}{}:
		default:
		}
		armGCNotice(notify, stop)
	})
}

// Stop ends the trimmer's goroutine and waits for it. Stopping a trimmer that
// is not running does nothing.
func (t *Trimmer) Stop() {
	t.mu.Lock()
	stop, done := t.stop, t.done
	t.stop, t.done = nil, nil
	t.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	<-done
}

// run polls until stop is closed.
func (t *Trimmer) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(max(t.interval/pollsPerInterval, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			t.check(now)
		case <-t.gcDone:
			t.check(time.Now())
		}
	}
}

// check trims if the idle, unreleased heap exceeds the threshold and the last
// trim is at least an interval before now. It reports whether it trimmed and
// how many bytes the runtime released. It does not allocate when it does not
// trim.
func (t *Trimmer) check(now time.Time) (trimmed bool, returned uint64) {
	t.checks.Add(1)
	metrics.Read(t.samples[:])
	free := sampleUint64(t.samples[sampleHeapFree])
	t.lastFree.Store(free)
	if free <= t.threshold {
		return false, 0
	}
	if !t.lastRun.IsZero() && now.Sub(t.lastRun) < t.interval {
		return false, 0
	}
	releasedBefore := sampleUint64(t.samples[sampleHeapReleased])
	start := time.Now()
	debug.FreeOSMemory()
	took := time.Since(start)
	metrics.Read(t.samples[:])
	releasedAfter := sampleUint64(t.samples[sampleHeapReleased])
	t.lastFree.Store(sampleUint64(t.samples[sampleHeapFree]))
	if releasedAfter > releasedBefore {
		returned = releasedAfter - releasedBefore
	}
	t.lastRun = now
	t.runs.Add(1)
	t.nanos.Add(int64(took))
	t.lastNanos.Store(int64(took))
	t.returnedBytes.Add(returned)
	t.log.Debug("memory: trimmed idle heap", "idle_bytes", free, "returned_bytes", returned, "took", took)
	return true, returned
}

// sampleUint64 returns a runtime/metrics sample's value, 0 if the runtime
// does not know the metric (never for the names used here on Go 1.26).
func sampleUint64(s metrics.Sample) uint64 {
	if s.Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s.Value.Uint64()
}

// writeMetrics writes the trimmer's series with help text.
func (t *Trimmer) writeMetrics(w io.Writer) {
	writeMetric(w, "relay_memory_trim_threshold_bytes", "gauge",
		"Idle unreleased heap above which the trimmer returns memory to the OS.", float64(t.threshold))
	writeMetric(w, "relay_memory_trim_interval_seconds", "gauge",
		"Minimum time between two trims.", t.interval.Seconds())
	writeMetric(w, "relay_memory_trim_checks_total", "counter",
		"Times the trimmer sampled the idle heap.", float64(t.checks.Load()))
	writeMetric(w, "relay_memory_trim_runs_total", "counter",
		"Times the trimmer called debug.FreeOSMemory.", float64(t.runs.Load()))
	writeMetric(w, "relay_memory_trim_seconds_total", "counter",
		"Wall time spent in debug.FreeOSMemory (a forced GC plus scavenge).", time.Duration(t.nanos.Load()).Seconds())
	writeMetric(w, "relay_memory_trim_last_seconds", "gauge",
		"Wall time of the most recent trim.", time.Duration(t.lastNanos.Load()).Seconds())
	writeMetric(w, "relay_memory_trim_returned_bytes_total", "counter",
		"Heap bytes the runtime released to the OS during trims.", float64(t.returnedBytes.Load()))
	writeMetric(w, "relay_memory_trim_idle_bytes", "gauge",
		"Idle unreleased heap at the trimmer's latest check.", float64(t.lastFree.Load()))
}

// writeMetric writes one unlabelled series in Prometheus text format with its
// HELP and TYPE lines, which VictoriaMetrics/metrics' own types cannot carry.
func writeMetric(w io.Writer, name, typ, help string, v float64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %g\n", name, help, name, typ, name, v)
}
