package relay

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"
	"unsafe"

	"github.com/atrelay/relay/engine/identity"
)

// Parking (issue 12, point 4). A worker serves many accounts, one frame at
// a time. When a frame needs an identity the resolver has not cached (a
// new account, an expired entry, an #identity event's fresh document, a
// re-resolve after a mismatch), waiting for it would hold every other
// account of the worker behind one DID document server, which may take the
// whole resolution timeout to answer. Instead the worker starts the
// resolution (or joins the one running), parks the frame in a per-worker
// side queue keyed by DID, and goes on with its next frame. Later frames
// and account actions of a parked DID queue behind it, so per-account
// order holds. One goroutine per parked DID waits for the resolution and
// then queues an unpark task on the DID's worker, which runs the parked
// tasks again, in order; by then the identity is cached.
//
// Bounds: the parked frames' bytes (Config.ParkedBytes, taken out of the
// intake share) and the parked DIDs per worker (Config.ParkedAccounts,
// which bounds the waiting goroutines). When either is reached the worker
// waits for the resolution itself, as it did before parking existed, so
// its queue fills and the hosts feeding it pause: back-pressure, never a
// drop. A frame parks at most maxParks times; after that (its identity was
// evicted or purged again meanwhile) it waits. A frame that waited for a
// resolution does not re-resolve the DID again: the document it got was
// fetched after the frame arrived. On Close, parked frames are processed
// waiting (flushParked) before the workers stop.
//
// An answer does not queue behind the worker's frames: awaitIdentity puts
// it in the worker's ready list (readyUnparks), which the worker empties
// before its next queued task, and wakes an idle worker with an empty
// task. Queued behind a full queue of frames, each answer would wait for
// every frame ahead of it, many of them new accounts that find the side
// queue full and wait for their own resolution in turn: the side queue
// would stay full and the worker would resolve one account at a time
// (observed: 10 events/s with 2,000 new accounts a second arriving).
//
// Parked frames hold their upstream seqs, so their host's cursor and the
// host's later results (held by the sequencer for host order) wait for
// them; the host's rate limit bounds how much can pile up.
//
// Transient failures (issue 16). The PLC directory rate-limits, fails a
// share of requests and is sometimes unreachable. The resolver paces its
// requests and retries a few times (identity.Config), but a failure can
// outlast that, and a rejected frame is lost for consumers. So a frame
// whose did:plc identity is unavailable for a transient reason
// (identity.Resolver.Retryable) is not rejected: it parks like a frame
// whose identity is being resolved (or, on a worker that must wait, is
// waited for), and the resolution is retried after retryDelay (1 s
// doubled per retry up to 30 s, jittered; relay_identity_park_retries_total)
// until it succeeds, fails for good, or Config.IdentityRetryTimeout has
// passed since the frame arrived. Only then is the frame, with the
// account's frames parked behind it, run against the failure and rejected
// as identity_unavailable (relay_identity_park_expired_total counts the
// give-ups). The bounds above still hold: an outage fills the side
// queues, then the workers wait, their queues fill and the hosts pause. A
// definitive failure (no such DID, an unusable document) and a did:web
// failure are rejected at once. So is what a closing relay cannot resolve
// in one more attempt: Close stops the retries (bgCtx) and flushParked
// does not wait out an outage, which would hold the shutdown for minutes.

// maxParks bounds how often one frame parks before its worker waits.
const maxParks = 2

// parkTaskBytes is what a parked task costs besides its frame (the task
// value and its share of the side queue).
const parkTaskBytes = int64(unsafe.Sizeof(task{})) + 16

// mustPark is the drop reason process returns for a frame that needs a
// resolution it must not wait for: the worker parks it.
const mustPark = numDropReasons + 1

// Retry delays after a transient failure (retryDelay).
const (
	retryFirst = time.Second
	retryMax   = 30 * time.Second
)

// retryDelay is the wait before retry number attempt+1 of a resolution
// that failed transiently: retryFirst doubled per earlier retry, capped
// at retryMax, jittered in [½, 1½) so accounts that failed together do
// not retry together.
func retryDelay(attempt int) time.Duration {
	d := retryFirst
	for i := 0; i < attempt && d < retryMax; i++ {
		d *= 2
	}
	d = min(d, retryMax)
	return d/2 + rand.N(d+1)
}

// resolvedCtx is an already-canceled context: identity.Lookup with it
// returns a cached identity, or starts (or joins) the resolution and
// returns context.Canceled at once.
var resolvedCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// parkIDs is the verify.Identities a worker hands the validator and uses
// itself for the frame it is processing. Owned by the worker goroutine.
type parkIDs struct {
	w   *accountWorkers
	ids *identity.Resolver
	// wait makes Lookups wait for resolutions, retrying transient failures
	// (side queue full, closing, or the frame parked maxParks times).
	// Otherwise a Lookup that would wait, or that failed transiently, sets
	// parked and fails: the worker parks the frame.
	wait   bool
	parked bool
	// again is set while the frame runs after parking: it already
	// re-resolved its DID (or had it resolved after it arrived), so Purge
	// does nothing and an #identity event takes the cached document.
	again bool
	// fail, when set, is the transient failure that outlasted the retry
	// window of the parked frames being run: a Lookup that would resolve
	// returns it (the frame is rejected) instead of parking or waiting.
	fail error
	// closing: the relay is closing (flushParked), waits are not retried.
	closing bool
	// since is the frame's arrival; retries end IdentityRetryTimeout after.
	since time.Time
}

// begin resets the adapter for task t. force makes it wait; fail is the
// failure of an expired retry window (nil: none).
func (p *parkIDs) begin(t *task, force, closing bool, fail error) {
	p.parked, p.again = false, t.parks > 0
	p.wait = force || t.parks >= maxParks
	p.fail, p.closing, p.since = fail, closing, t.start
}

// Lookup implements verify.Identities.
func (p *parkIDs) Lookup(ctx context.Context, did string) (identity.Identity, error) {
	switch {
	case p.fail != nil:
		id, err := p.ids.Lookup(resolvedCtx, did)
		if errors.Is(err, context.Canceled) || p.ids.Retryable(did, err) {
			return identity.Identity{}, p.fail
		}
		return id, err
	case p.wait:
		if p.closing {
			return p.ids.Lookup(ctx, did)
		}
		return p.w.resolveRetrying(ctx, did, p.since)
	}
	id, err := p.ids.Lookup(resolvedCtx, did)
	if errors.Is(err, context.Canceled) || p.ids.Retryable(did, err) {
		p.parked = true
	}
	return id, err
}

// reresolve is Lookup for an #identity event: on the event's first run it
// takes the document Refresh fetched for it (identity.Resolver.Reresolve);
// a transient failure of that parks (or waits and retries) like Lookup's.
func (p *parkIDs) reresolve(ctx context.Context, did string, tag uint64) (identity.Identity, error) {
	if p.again || p.fail != nil {
		return p.Lookup(ctx, did)
	}
	if p.wait {
		id, err := p.ids.Reresolve(ctx, did, tag)
		if !p.closing && p.ids.Retryable(did, err) {
			// Reresolve purged the old document: any later one is fresh.
			return p.Lookup(ctx, did)
		}
		return id, err
	}
	id, err := p.ids.Reresolve(resolvedCtx, did, tag)
	if errors.Is(err, context.Canceled) || p.ids.Retryable(did, err) {
		p.parked = true
	}
	return id, err
}

// resolveRetrying returns did's identity, waiting for its resolution and,
// while it fails transiently (Retryable), retrying until
// IdentityRetryTimeout after since (the frame's arrival) or until ctx
// ends; the last result is returned either way. A fresh failure (a
// *identity.ResolveError: a resolution just failed) is retried after
// retryDelay; a cached one (a bare sentinel, at most a few seconds old)
// at once, since it says little about now: frames queued behind one that
// waited out an outage must not each sleep, nor be given up, on the
// strength of a failure from before the directory came back.
func (w *accountWorkers) resolveRetrying(ctx context.Context, did string, since time.Time) (identity.Identity, error) {
	id, err := w.ids.Lookup(ctx, did)
	until := since.Add(w.cfg.IdentityRetryTimeout)
	for delays := 0; w.ids.Retryable(did, err); {
		var fresh *identity.ResolveError
		isFresh := errors.As(err, &fresh)
		left := until.Sub(w.now())
		if left <= 0 && isFresh {
			w.m.parkExpired.Inc()
			break
		}
		if w.bgCtx.Err() != nil {
			break // closing
		}
		w.m.parkRetries.Inc()
		if isFresh {
			if !w.sleepRetry(ctx, min(retryDelay(delays), left)) {
				break
			}
			delays++
		}
		// Retry joins or starts a resolution: its failure is fresh.
		id, err = w.ids.Retry(ctx, did)
	}
	return id, err
}

// sleepRetry waits d, or until ctx ends or the relay closes, and reports
// whether the wait completed.
func (w *accountWorkers) sleepRetry(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-w.bgCtx.Done():
		return false
	}
}

// Purge implements verify.Identities.
func (p *parkIDs) Purge(did string) {
	if !p.again {
		p.ids.Purge(did)
	}
}

// parkedAcct is one parked DID's tasks, oldest first: the first needs the
// resolution, the rest arrived behind it.
type parkedAcct struct {
	did   string
	tasks []task
	bytes int64
}

// parkWeight is what a parked task counts against ParkedBytes.
func parkWeight(t *task) int64 {
	if t.ctl != nil {
		return parkTaskBytes
	}
	return int64(t.f.Cap()) + parkTaskBytes
}

// parkBehind queues t behind pa, its DID's parked tasks. With the side
// queue full it processes pa's tasks and then t at once, waiting for the
// resolution, so order holds either way.
func (w *accountWorkers) parkBehind(s *scratch, pa *parkedAcct, t task) {
	weight := parkWeight(&t)
	if s.parkedBytes+weight > w.parkedBytesPerWorker() {
		w.m.parkFull.Inc()
		was := s.forceWait
		s.forceWait = true
		w.unpark(s, pa, nil)
		w.handle(s, t)
		s.forceWait = was
		return
	}
	t.behind = true
	pa.tasks = append(pa.tasks, t)
	pa.bytes += weight
	s.parkedBytes += weight
	w.parkedFrames.Add(1)
	w.markParked(&t)
}

// markParked tells t's host tracker that t's frame waits on this worker
// for an identity, and wakes the sequencer if that frame is what its host's
// held results wait for.
func (w *accountWorkers) markParked(t *task) {
	if t.ctl != nil || t.hs == nil || w.cfg.Order != OrderAccount {
		return
	}
	if t.hs.tr.markParked(t.gen, t.seq) {
		w.parkedHeads.add(t.hs)
	}
}

// parkedHeads is the hosts whose lowest incomplete seq a worker parked
// since the sequencer last looked: workers add, the sequencer takes and
// passes only those hosts' held results (once it swept every host's, and
// a host parking its head fifty times a second made every other host's
// held list be walked as often). A host appears once per parked head,
// so the list is bounded by the parked frames.
type parkedHeads struct {
	handoff[*hostState]
	// wake is buffered one: a full channel already has the news.
	wake chan struct{}
}

// add records that hs's lowest incomplete seq is parked and wakes the
// sequencer. Called by workers.
func (p *parkedHeads) add(hs *hostState) {
	p.handoff.add(hs)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// park parks t, whose identity is being resolved, and starts the goroutine
// that unparks it. It reports false when the side queue is full: the
// caller then processes t waiting.
func (w *accountWorkers) park(s *scratch, t task) bool {
	weight := parkWeight(&t)
	if s.forceWait || len(s.parked) >= w.cfg.ParkedAccounts || s.parkedBytes+weight > w.parkedBytesPerWorker() {
		w.m.parkFull.Inc()
		return false
	}
	did := string(t.did)
	t.parks++
	pa := &parkedAcct{did: did, tasks: []task{t}, bytes: weight}
	s.parked[did] = pa
	s.parkedBytes += weight
	w.parkedFrames.Add(1)
	w.m.parked.Inc()
	w.parkWG.Add(1)
	go w.awaitIdentity(pa, did, t.start)
	w.markParked(&t)
	return true
}

// awaitIdentity waits for did's resolution (joining the flight the worker
// started), retrying transient failures until IdentityRetryTimeout after
// since (the parked frame's arrival), and asks did's worker to run the
// tasks parked in pa, with the failure if the window ran out. pa only
// names the parking (the worker owns it): if the worker ran those tasks
// meanwhile and parked new ones of did, this answer is not theirs. It
// gives up when the relay closes: Close flushes parked tasks itself.
func (w *accountWorkers) awaitIdentity(pa *parkedAcct, did string, since time.Time) {
	defer w.parkWG.Done()
	_, err := w.resolveRetrying(w.ctx, did, since)
	c := &control{did: did, kind: ctlUnpark, parked: pa}
	if w.ids.Retryable(did, err) {
		c.err = err
	}
	key := []byte(did)
	w.ready[w.pool.WorkerOfBytes(key)].add(c)
	// A busy worker (full queue) runs the answer before its next task; an
	// idle one needs a task to wake it.
	_ = w.pool.TrySubmitBytes(key, task{ctl: &control{did: did, kind: ctlWake}, start: w.now()}, 1)
}

// readyUnparks is one worker's unpark answers waiting to run, taken only
// by its worker.
type readyUnparks = handoff[*control]

// handoff is a list any goroutine adds to and one goroutine takes whole.
// Safe for concurrent use.
type handoff[T any] struct {
	mu    sync.Mutex
	items []T // guarded by mu
}

// add appends x to the list.
func (h *handoff[T]) add(x T) {
	h.mu.Lock()
	h.items = append(h.items, x)
	h.mu.Unlock()
}

// take appends the list to into, empties it, and returns into.
func (h *handoff[T]) take(into []T) []T {
	h.mu.Lock()
	into = append(into, h.items...)
	clear(h.items)
	h.items = h.items[:0]
	h.mu.Unlock()
	return into
}

// runReady runs the unpark answers waiting for s's worker, in the order
// they came.
func (w *accountWorkers) runReady(s *scratch) {
	s.readyBuf = w.ready[s.id].take(s.readyBuf[:0])
	for i, c := range s.readyBuf {
		w.handle(s, task{ctl: c, start: w.now()})
		s.readyBuf[i] = nil
	}
}

// unpark runs pa's parked tasks again, in order; fail, when set, is the
// transient failure their retry window ended with, which they are run
// against (rejected). A task that parks again takes the rest of the list
// behind it (parkBehind).
func (w *accountWorkers) unpark(s *scratch, pa *parkedAcct, fail error) {
	delete(s.parked, pa.did)
	s.parkedBytes -= pa.bytes
	w.parkedFrames.Add(-int64(len(pa.tasks)))
	was := s.retryFail
	s.retryFail = fail
	for i := range pa.tasks {
		w.handle(s, pa.tasks[i])
		pa.tasks[i] = task{}
	}
	s.retryFail = was
}

// flushParked processes every parked task of the worker, waiting for their
// resolutions (one attempt: a closing relay does not wait out a PLC
// outage), and makes the worker wait from now on (Close).
func (w *accountWorkers) flushParked(s *scratch) {
	s.forceWait, s.closing = true, true
	for _, pa := range s.parked {
		w.unpark(s, pa, nil)
	}
}

// parkedBytesPerWorker is each worker's share of ParkedBytes.
func (w *accountWorkers) parkedBytesPerWorker() int64 {
	return max(w.cfg.ParkedBytes/int64(w.cfg.Workers), 1)
}
