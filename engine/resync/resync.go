package resync

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/bytebufferpool"

	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/engine/verify"
)

// Resyncer fetches and verifies whole repositories for desynchronized
// accounts with a fixed set of workers (see the package doc). Safe for
// concurrent use.
type Resyncer struct {
	// Static after New.
	cfg     Config
	ctx     context.Context // canceled by Close
	cancel  context.CancelFunc
	queue   chan job // waiting DIDs; capacity QueueSize
	limiter *limiter
	mem     *memShare // the resync share of the memory budget
	m       *resyncMetrics
	wg      sync.WaitGroup // the workers

	inFlight  atomic.Int64 // DIDs a worker holds
	closeOnce sync.Once

	mu struct {
		sync.Mutex
		// pending holds every DID queued or held by a worker, so each
		// DID is in the system at most once.
		pending map[string]pendingEntry
		// closed refuses further Enqueues (Drain or Close began).
		closed bool
		// idle, when non-nil, is closed as pending becomes empty
		// (Drain waits on it).
		idle chan struct{}
	}
}

// pendingEntry is one DID's place in the system; guarded by Resyncer.mu.
type pendingEntry struct {
	running bool   // a worker holds it
	again   bool   // Enqueued while running: resync once more after
	host    string // host of the latest Enqueue, for the rerun
}

// job is one queued DID.
type job struct {
	did, host string
}

// worker is one worker's scratch, owned by its goroutine.
type worker struct {
	verifier *verify.RepoVerifier
	// mem reserves what the current resync holds: the body buffer, then
	// also the verifier's scratch. Empty between resyncs.
	mem *reservation
	// scratch is what mem holds for the verifier's scratch (0 before
	// verification).
	scratch int64
}

// New starts a Resyncer with cfg's zero fields defaulted. It fails only
// when Identities or OnResult is missing.
func New(cfg Config) (*Resyncer, error) {
	if cfg.Identities == nil || cfg.OnResult == nil {
		return nil, ErrConfig
	}
	cfg = cfg.withDefaults()
	r := &Resyncer{
		cfg:     cfg,
		queue:   make(chan job, cfg.QueueSize),
		limiter: newLimiter(cfg.RatePerSecond, cfg.Burst, time.Now),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.mu.pending = make(map[string]pendingEntry)
	r.m = newResyncMetrics(cfg.Metrics, r)
	r.mem = newMemShare(cfg.MemoryBytes, r.m.memoryBusy)
	for range cfg.Concurrency {
		w := &worker{verifier: verify.NewRepoVerifier(cfg.Verify), mem: r.mem.reservation()}
		r.wg.Add(1)
		go r.work(w)
	}
	return r, nil
}

// Metrics returns the set the resyncer's metrics are registered on.
func (r *Resyncer) Metrics() *metrics.Set { return r.cfg.Metrics }

// Enqueue asks for did to be resynced; host is the host that reported the
// break (the fetch goes to the PDS of the DID document, which may differ).
// A DID already waiting is not queued twice; one being resynced runs once
// more afterwards, since the break may postdate its fetch. Both count as
// accepted. Enqueue returns false, without blocking, when the queue is
// full or the Resyncer is closing: the caller counts it and retries later.
func (r *Resyncer) Enqueue(did, host string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		r.m.rejected.Inc()
		return false
	}
	if e, ok := r.mu.pending[did]; ok {
		if e.running {
			e.again, e.host = true, host
			r.mu.pending[did] = e
		}
		r.m.coalesced.Inc()
		return true
	}
	select {
	case r.queue <- job{did: did, host: host}:
		r.mu.pending[did] = pendingEntry{}
		return true
	default:
		r.m.rejected.Inc()
		return false
	}
}

// Close stops the Resyncer: Enqueue refuses, running fetches are canceled,
// waiting DIDs are dropped (counted in relay_resync_canceled_total), and
// Close returns once every worker has exited. OnResult is not called for
// canceled work nor after Close returns; the engine keeps those accounts
// desynchronized and enqueues them again on restart. Safe to call twice.
func (r *Resyncer) Close() {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.mu.closed = true
		r.mu.Unlock()
		r.cancel()
		r.wg.Wait()
		// The workers are gone and Enqueue refuses, so nothing else
		// touches the queue now.
		for len(r.queue) > 0 {
			<-r.queue
			r.m.canceled.Inc()
		}
		r.mu.Lock()
		clear(r.mu.pending)
		if r.mu.idle != nil {
			close(r.mu.idle)
			r.mu.idle = nil
		}
		r.mu.Unlock()
	})
}

// Drain refuses further Enqueues, waits until every queued and running
// resync has delivered its result, then closes. If ctx ends first, the
// rest is canceled as by Close and ctx's error returned.
func (r *Resyncer) Drain(ctx context.Context) error {
	r.mu.Lock()
	r.mu.closed = true
	var idle chan struct{}
	if len(r.mu.pending) > 0 {
		if r.mu.idle == nil {
			r.mu.idle = make(chan struct{})
		}
		idle = r.mu.idle
	}
	r.mu.Unlock()
	var err error
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	r.Close()
	return err
}

// work is one worker's loop.
func (r *Resyncer) work(w *worker) {
	defer r.wg.Done()
	for {
		var j job
		select {
		case <-r.ctx.Done():
			return
		case j = <-r.queue:
		}
		r.mu.Lock()
		r.mu.pending[j.did] = pendingEntry{running: true}
		r.mu.Unlock()
		r.inFlight.Add(1)
		for r.runOne(w, j) {
			host, again := r.takeRerun(j.did)
			if !again {
				break
			}
			j.host = host
		}
		r.inFlight.Add(-1)
		if r.ctx.Err() != nil {
			return
		}
	}
}

// takeRerun ends the current run of did. When did was enqueued meanwhile
// (and the Resyncer still accepts work) it stays held and again is true,
// with the host of that Enqueue; otherwise did leaves the system.
func (r *Resyncer) takeRerun(did string) (host string, again bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.mu.pending[did]
	if e.again && !r.mu.closed {
		r.mu.pending[did] = pendingEntry{running: true}
		return e.host, true
	}
	delete(r.mu.pending, did)
	if len(r.mu.pending) == 0 && r.mu.idle != nil {
		close(r.mu.idle)
		r.mu.idle = nil
	}
	return "", false
}

// runOne resyncs j and delivers the result. It reports whether the DID
// must be released with takeRerun (false only when canceled by Close,
// which clears pending itself).
func (r *Resyncer) runOne(w *worker, j job) bool {
	start := time.Now()
	res, buf := r.resync(w, j)
	defer r.releaseRepo(w, buf)
	if r.ctx.Err() != nil {
		r.m.canceled.Inc()
		return false
	}
	r.cfg.OnResult(j.did, res)
	r.m.outcomes[res.Outcome].Inc()
	r.m.duration.UpdateDuration(start)
	if res.Outcome != OK {
		r.cfg.Logger.Info("resync failed", "did", j.did, "host", j.host, "outcome", res.Outcome.String(),
			"attempts", res.Attempts, "err", res.Err)
	}
	return true
}

// releaseRepo gives back what one fetched repository held: its buffer (nil
// for none), its reservation in the memory share and, when it was large,
// the verifier's scratch.
func (r *Resyncer) releaseRepo(w *worker, buf *bytebufferpool.ByteBuffer) {
	r.cfg.Buffers.Put(buf)
	if w.scratch > retainScratchBytes {
		w.verifier = verify.NewRepoVerifier(r.cfg.Verify)
	}
	w.scratch = 0
	w.mem.release()
}

// reserveScratch raises w's reservation by the scratch verifying buf
// needs, counted from its blocks. On failure it returns the outcome and
// whether a retry may help.
func (r *Resyncer) reserveScratch(w *worker, buf []byte) (Outcome, bool, error) {
	maxBlocks := r.cfg.Verify.MaxBlocks
	if maxBlocks <= 0 {
		maxBlocks = car.DefaultMaxBlocks
	}
	scratch := int64(min(carBlocks(buf), maxBlocks)+1) * scratchPerBlock
	if err := w.mem.growTo(r.ctx, int64(cap(buf))+scratch); err != nil {
		o, retry := memOutcome(err)
		return o, retry, err
	}
	w.scratch = scratch
	return OK, false, nil
}

// resync runs the attempts for one DID. The returned buffer (nil unless a
// body was read) holds the bytes Result.State aliases; the caller gives it
// back with releaseRepo after OnResult. Between attempts everything an
// attempt held is released.
func (r *Resyncer) resync(w *worker, j job) (Result, *bytebufferpool.ByteBuffer) {
	res := Result{Host: j.host}
	retriedSig := false
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			r.m.retries.Inc()
			if sleep(r.ctx, r.backoff(attempt)) != nil {
				return res, nil
			}
		}
		last := attempt >= r.cfg.Retries
		// Fresh identity on every attempt: the break that queued this DID
		// often follows a rotation or a migration (spec §8.1).
		r.cfg.Identities.Purge(j.did)
		ident, err := r.cfg.Identities.Lookup(r.ctx, j.did)
		if err != nil {
			res.Outcome, res.Err, res.Identity = IdentityError, err, identity.Identity{}
			if !last && transientIdentity(err) {
				continue
			}
			return res, nil
		}
		base, err := baseURL(ident.PDSHost, r.cfg.AllowInsecureHosts)
		if err != nil {
			res.Outcome, res.Err, res.Identity = IdentityError, err, identity.Identity{}
			return res, nil
		}
		res.Identity = ident
		if r.limiter.wait(r.ctx) != nil {
			return res, nil
		}
		res.Attempts++
		buf, o, retry, err := r.fetch(r.ctx, w, base, j.did)
		if err == nil {
			res.Bytes = len(buf.B)
			o, retry, err = r.reserveScratch(w, buf.B)
		}
		if err != nil {
			r.releaseRepo(w, buf)
			res.Outcome, res.Err = o, err
			if retry && !last {
				continue
			}
			return res, nil
		}
		st, err := w.verifier.Verify(buf.B, j.did, ident.Key)
		if err != nil {
			res.Outcome, res.Err, res.Reason = VerifyError, err, verify.RepoReason(err)
			// A signature that fails may be a rotation that landed
			// between the lookup and the fetch: one fresh try, no more,
			// since each costs a whole repository.
			if res.Reason == verify.ReasonBadSignature && !retriedSig && !last {
				retriedSig = true
				r.releaseRepo(w, buf)
				continue
			}
			return res, buf
		}
		res.Outcome, res.Err, res.Reason, res.State = OK, nil, verify.ReasonNone, st
		return res, buf
	}
}

// backoff returns the wait before retry number attempt (≥ 1): RetryBackoff
// doubled per earlier retry, capped at MaxBackoff, ±25% jitter so many
// accounts of one failing PDS do not retry in step.
func (r *Resyncer) backoff(attempt int) time.Duration {
	d := r.cfg.RetryBackoff
	for i := 1; i < attempt && d < r.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.cfg.MaxBackoff)
	return d - d/4 + rand.N(d/2+1)
}

// transientIdentity reports identity failures worth retrying: the
// directory or did:web host was unreachable, slow or answered an error.
func transientIdentity(err error) bool {
	return errors.Is(err, identity.ErrTransport) || errors.Is(err, identity.ErrTimeout) ||
		errors.Is(err, identity.ErrHTTPStatus)
}

// resyncMetrics are the resyncer's counters, registered on Config.Metrics.
type resyncMetrics struct {
	outcomes     [numOutcomes]*metrics.Counter
	duration     *metrics.Histogram
	rejected     *metrics.Counter
	coalesced    *metrics.Counter
	retries      *metrics.Counter
	fetchedBytes *metrics.Counter
	canceled     *metrics.Counter
	memoryBusy   *metrics.Counter
}

func newResyncMetrics(set *metrics.Set, r *Resyncer) *resyncMetrics {
	m := &resyncMetrics{
		duration:     set.NewHistogram("relay_resync_duration_seconds"),
		rejected:     set.NewCounter("relay_resync_rejected_total"),
		coalesced:    set.NewCounter("relay_resync_coalesced_total"),
		retries:      set.NewCounter("relay_resync_retries_total"),
		fetchedBytes: set.NewCounter("relay_resync_fetched_bytes_total"),
		canceled:     set.NewCounter("relay_resync_canceled_total"),
		memoryBusy:   set.NewCounter("relay_resync_memory_busy_total"),
	}
	for _, o := range AllOutcomes() {
		m.outcomes[o] = set.NewCounter(fmt.Sprintf("relay_resyncs_total{outcome=%q}", o.String()))
	}
	set.NewGauge("relay_resync_queue_length", func() float64 { return float64(len(r.queue)) })
	set.NewGauge("relay_resync_in_flight", func() float64 { return float64(r.inFlight.Load()) })
	set.NewGauge("relay_resync_memory_reserved_bytes", func() float64 { used, _ := r.mem.stats(); return float64(used) })
	set.NewGauge("relay_resync_memory_limit_bytes", func() float64 { return float64(r.cfg.MemoryBytes) })
	return m
}
