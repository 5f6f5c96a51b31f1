package relay

import (
	"context"
	"errors"
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
// Parked frames hold their upstream seqs, so their host's cursor and the
// host's later results (held by the sequencer for host order) wait for
// them; the host's rate limit bounds how much can pile up.

// maxParks bounds how often one frame parks before its worker waits.
const maxParks = 2

// parkTaskBytes is what a parked task costs besides its frame (the task
// value and its share of the side queue).
const parkTaskBytes = int64(unsafe.Sizeof(task{})) + 16

// mustPark is the drop reason process returns for a frame that needs a
// resolution it must not wait for: the worker parks it.
const mustPark = numDropReasons + 1

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
	ids *identity.Resolver
	// wait makes Lookups wait for resolutions (side queue full, closing,
	// or the frame parked maxParks times). Otherwise a Lookup that would
	// wait sets parked and fails: the worker parks the frame.
	wait   bool
	parked bool
	// again is set while the frame runs after parking: it already
	// re-resolved its DID (or had it resolved after it arrived), so Purge
	// does nothing and an #identity event takes the cached document.
	again bool
}

// begin resets the adapter for task t.
func (p *parkIDs) begin(t *task, force bool) {
	p.parked, p.again = false, t.parks > 0
	p.wait = force || t.parks >= maxParks
}

// Lookup implements verify.Identities.
func (p *parkIDs) Lookup(ctx context.Context, did string) (identity.Identity, error) {
	if p.wait {
		return p.ids.Lookup(ctx, did)
	}
	id, err := p.ids.Lookup(resolvedCtx, did)
	if errors.Is(err, context.Canceled) {
		p.parked = true
	}
	return id, err
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
func (r *Relay) parkBehind(s *scratch, pa *parkedAcct, t task) {
	w := parkWeight(&t)
	if s.parkedBytes+w > r.parkedBytesPerWorker() {
		r.m.parkFull.Inc()
		was := s.forceWait
		s.forceWait = true
		r.unpark(s, pa.did)
		r.handle(s, t)
		s.forceWait = was
		return
	}
	pa.tasks = append(pa.tasks, t)
	pa.bytes += w
	s.parkedBytes += w
	r.parkedFrames.Add(1)
}

// park parks t, whose identity is being resolved, and starts the goroutine
// that unparks it. It reports false when the side queue is full: the
// caller then processes t waiting.
func (r *Relay) park(s *scratch, t task) bool {
	w := parkWeight(&t)
	if s.forceWait || len(s.parked) >= r.cfg.ParkedAccounts || s.parkedBytes+w > r.parkedBytesPerWorker() {
		r.m.parkFull.Inc()
		return false
	}
	did := string(t.did)
	t.parks++
	pa := &parkedAcct{did: did, tasks: []task{t}, bytes: w}
	s.parked[did] = pa
	s.parkedBytes += w
	r.parkedFrames.Add(1)
	r.m.parked.Inc()
	r.parkWG.Add(1)
	go r.awaitIdentity(did)
	return true
}

// awaitIdentity waits for did's resolution (joining the flight the worker
// started) and asks did's worker to run its parked tasks. It gives up when
// the relay closes: Close flushes parked tasks itself.
func (r *Relay) awaitIdentity(did string) {
	defer r.parkWG.Done()
	_, _ = r.ids.Lookup(r.ctx, did)
	c := &control{did: did, kind: ctlUnpark}
	_ = r.workers.SubmitBytes(r.ctx, []byte(did), task{ctl: c, start: r.now()}, 1)
}

// unpark runs did's parked tasks again, in order. A task that parks again
// takes the rest of the list behind it (parkBehind).
func (r *Relay) unpark(s *scratch, did string) {
	pa := s.parked[did]
	if pa == nil {
		return // flushed by Close, or unparked by an earlier waiter
	}
	delete(s.parked, did)
	s.parkedBytes -= pa.bytes
	r.parkedFrames.Add(-int64(len(pa.tasks)))
	for i := range pa.tasks {
		r.handle(s, pa.tasks[i])
		pa.tasks[i] = task{}
	}
}

// flushParked processes every parked task of the worker, waiting for their
// resolutions, and makes the worker wait from now on (Close).
func (r *Relay) flushParked(s *scratch) {
	s.forceWait = true
	for did := range s.parked {
		r.unpark(s, did)
	}
}

// parkedBytesPerWorker is each worker's share of ParkedBytes.
func (r *Relay) parkedBytesPerWorker() int64 {
	return max(r.cfg.ParkedBytes/int64(r.cfg.Workers), 1)
}
