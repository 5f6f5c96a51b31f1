package relay

import (
	"bytes"
	"context"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/pool"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/verify"
	"github.com/atrelay/relay/store"
	"github.com/valyala/bytebufferpool"
)

// accountWorkers is the validation stage: the handler of the keyed worker
// pool (decode, account state in the overlay ▸ store, verify, canonical
// output frame), identity parking (park.go) and the account actions that
// run on a DID's worker (accounts.go). Each worker goroutine owns its
// scratch; what is shared here is static or atomic.
type accountWorkers struct {
	// Static after New.
	cfg     *Config // the relay's, read-only
	st      *store.Store
	ids     *identity.Resolver
	log     *slog.Logger
	m       *metricsSet
	now     func() time.Time
	bufs    *pool.Buffers
	hosts   *hostTable
	resyncs *resyncs
	fail    func(error) // stops ingestion after a store error (Relay.fail)
	// pool runs handle; awaitIdentity submits unpark tasks to it. Set by
	// New right after building the pool, before any task is submitted.
	pool *pool.Workers[task, scratch]
	// ctx ends once the workers and the sequencer stopped (identity
	// lookups, unpark submissions); bgCtx ends first, at Close (retries).
	ctx, bgCtx context.Context

	// Handed over to the sequencer (sequencer.go): results carries every
	// task's result, budget bounds their bytes, durable[i] is the last
	// ticket of worker i the sequencer made durable (written by the
	// sequencer, read by worker i's evict).
	results chan<- result
	budget  *byteBudget
	durable []atomic.Uint64
	// parkedHeads tells the sequencer which hosts have a parked frame as
	// their lowest incomplete seq: the results held behind it may pass it
	// (sequencer.passHeld).
	parkedHeads *parkedHeads

	// overlayBytes[i] is worker i's overlay size (overlay.published),
	// summed on scrape into relay_overlay_bytes. Set by New.
	overlayBytes []atomic.Int64

	parkedFrames atomic.Int64   // tasks parked on all workers (gauge)
	parkWG       sync.WaitGroup // awaitIdentity goroutines; Close waits for them
	// ready[i] holds worker i's unpark answers (park.go): written by the
	// awaitIdentity goroutines, taken by worker i before each queued task.
	// Set by New with the pool.
	ready []readyUnparks
}

// scratch is one worker's private state, reused across its tasks: owned by
// that worker goroutine alone.
type scratch struct {
	id      int
	dec     event.Decoder
	msg     event.Message
	val     *verify.Validator
	vs      verify.AccountState
	acct    store.Account
	overlay overlay
	ticket  uint64 // increases with every result this worker sends
	commit  event.Commit
	// Parking (park.go): the identities the validator uses, the parked
	// DIDs' tasks and their bytes, and whether the worker must wait for
	// resolutions instead (side queue full, closing).
	ids         parkIDs
	parked      map[string]*parkedAcct
	parkedBytes int64
	forceWait   bool
	closing     bool       // Close is flushing parked tasks: no retries
	retryFail   error      // set while unpark runs tasks whose retry window ran out
	readyBuf    []*control // runReady's scratch
}

// result is what a worker hands the sequencer for every task.
type result struct {
	hs     *hostState // nil for relay-generated events
	seq    int64      // upstream seq to complete in hs's tracker
	gen    uint64
	worker int
	ticket uint64
	start  time.Time
	kind   event.Kind
	// out holds the output frame (placeholder seq) followed by copies of the
	// event's DID, rev, commit and data; nil when the frame was dropped.
	out      *bytebufferpool.ByteBuffer
	frameLen int
	ev       store.Event // byte fields view out
	// did and localAfter, for a result without an event, ask the sequencer
	// to set the account's local status once the batch is durable (a
	// resync that found the account already past the fetched head).
	did        string
	localAfter store.LocalStatus
	// budget is what this result holds of the results byte budget,
	// returned by the sequencer after the batch, or as soon as it holds
	// the result for host order (then it counts under MaxHeldBytes).
	budget int64
	// size is the memory the output frame takes (its buffer's capacity).
	size int64
	// cursor is set by the sequencer when it releases the result in its
	// host's order (heldList.release): the host's persisted cursor once the
	// result's batch is durable. 0 for a result that passed a parked frame
	// of its host, which the cursor must stay below.
	cursor int64
	// follows marks a relay-generated result the sequencer queued behind
	// its account's held results (followHeld): it never passes.
	follows bool
	// waited: the frame waited for its account's DID document (it parked,
	// or waited behind a frame of its account that did), so its delay is
	// partly the directory's.
	waited bool
}

func (w *accountWorkers) newScratch(worker int) scratch {
	return scratch{
		id:      worker,
		val:     verify.New(verify.Config{Mode: w.cfg.Validation, Now: w.now}),
		overlay: newOverlay(w.cfg.OverlayBytes/int64(w.cfg.Workers), &w.overlayBytes[worker]),
		ids:     parkIDs{w: w, ids: w.ids},
		parked:  make(map[string]*parkedAcct),
	}
}

// run is the pool's task function: the worker first runs the parked
// accounts whose resolutions have finished (park.go, readyUnparks), then t.
func (w *accountWorkers) run(s *scratch, t task) {
	w.runReady(s)
	w.handle(s, t)
}

// handle runs one task on a worker.
func (w *accountWorkers) handle(s *scratch, t task) {
	if c := t.ctl; c != nil {
		switch {
		case c.kind == ctlUnpark:
			// Only the parking the answer is for: it may have been run
			// already (a full side queue, Close) and the DID parked again.
			if pa := s.parked[c.did]; pa != nil && pa == c.parked {
				w.unpark(s, pa, c.err)
			}
		case c.kind == ctlFlushParked:
			w.flushParked(s)
		case c.kind == ctlWake:
		case len(s.parked) > 0 && s.parked[c.did] != nil:
			w.parkBehind(s, s.parked[c.did], t)
		default:
			w.runControlGuarded(s, t)
		}
		return
	}
	if len(s.parked) > 0 {
		if pa := s.parked[string(t.did)]; pa != nil {
			w.parkBehind(s, pa, t)
			return
		}
	}
	res := result{hs: t.hs, seq: t.seq, gen: t.gen, worker: s.id, start: t.start, kind: t.kind,
		waited: t.parks > 0 || t.behind}
	reason, ok := DropQuarantined, false
	if !t.hs.q.active() {
		s.ids.begin(&t, s.forceWait, s.closing, s.retryFail)
		reason, ok = w.processGuarded(s, t, &res)
		if reason == mustPark {
			if w.park(s, t) {
				return
			}
			// No room to park: wait for the resolution here, as a
			// frame that parked would (no second re-resolve).
			t.parks++
			s.ids.begin(&t, true, s.closing, s.retryFail)
			reason, ok = w.processGuarded(s, t, &res)
		}
	}
	t.f.Release()
	if !ok {
		if reason < numDropReasons {
			w.m.dropped[reason].Inc()
		}
		if res.out != nil {
			w.bufs.Put(res.out)
			res.out = nil
		}
	}
	w.send(s, res)
}

// send hands a result to the sequencer with the worker's next ticket,
// first taking its output bytes from the results budget (blocking while the
// sequencer is that far behind, which fills this worker's queue and pauses
// the hosts feeding it).
func (w *accountWorkers) send(s *scratch, res result) {
	s.ticket++
	res.ticket = s.ticket
	if res.out != nil {
		res.size = int64(cap(res.out.B))
		res.budget = res.size
		w.budget.acquire(res.budget)
	}
	w.results <- res
}

// noDrop marks a verify rejection already counted under its own reason.
const noDrop = numDropReasons

func (w *accountWorkers) process(s *scratch, t task, res *result) (DropReason, bool) {
	if testPanicHook != nil {
		testPanicHook("worker", t.did)
	}
	if err := s.dec.Decode(t.f.Bytes(), &s.msg); err != nil {
		return DropMalformed, false
	}
	m := &s.msg
	switch m.Kind {
	case event.KindCommit:
		return w.processCommit(s, t.hs, &m.Commit, res)
	case event.KindSync:
		return w.processSync(s, t.hs, &m.Sync, res)
	case event.KindIdentity:
		return w.processIdentity(s, t.hs, &m.Identity, res)
	case event.KindAccount:
		return w.processAccount(s, t.hs, &m.Account, res)
	}
	return DropUnknownKind, false
}

// load returns the account's state from the overlay, else from the store.
func (w *accountWorkers) load(s *scratch, did []byte) (*acctState, error) {
	if a := s.overlay.get(did); a != nil {
		return a, nil
	}
	found, err := w.st.GetAccount(did, &s.acct)
	if err != nil {
		return nil, err
	}
	return s.overlay.add(did, &s.acct, found, w.durable[s.id].Load()), nil
}

func (w *accountWorkers) fillVerifyState(s *scratch, a *acctState) *verify.AccountState {
	vs := &s.vs
	*vs = verify.AccountState{Known: a.known}
	if !a.known {
		return vs
	}
	if hs := w.hosts.lookup(a.host); hs != nil {
		vs.Host = hs.name
	} else if h, ok := w.st.GetHost(a.host); ok {
		vs.Host = h.Hostname
	}
	vs.Upstream, vs.Local = a.upstream, a.local
	if rev := a.rev(); len(rev) > 0 {
		vs.Rev, vs.Commit, vs.Data = rev, cid.CID(a.commit()), cid.CID(a.data())
	}
	return vs
}

// admit applies the host's account limit to an account the relay is about
// to create; false means the account is host-throttled.
func (w *accountWorkers) admit(hs *hostState, a *acctState) bool {
	if a.known {
		return a.local != store.LocalHostThrottled
	}
	if hs.accounts.Load() >= int64(hs.accountLimit.Load()) {
		// Persist the refusal so that raising the limit, even after a
		// restart, finds the account (store.MarkHostThrottled).
		if _, err := w.st.MarkHostThrottled([]byte(a.did()), hs.id); err != nil {
			w.log.Warn("cannot record host-throttled account", "did", a.did(), "host", hs.name, "err", err)
			return false
		}
		w.m.hostThrottled.Inc()
		a.known, a.host, a.local = true, hs.id, store.LocalHostThrottled
		a.upstream = store.StatusActive
		return false
	}
	hs.accounts.Add(1)
	a.known, a.host = true, hs.id
	return true
}

func (w *accountWorkers) processCommit(s *scratch, hs *hostState, c *event.Commit, res *result) (DropReason, bool) {
	a, err := w.load(s, c.Repo)
	if err != nil {
		w.fail(err)
		return DropShutdown, false
	}
	if a.known && a.local == store.LocalHostThrottled {
		return DropHostThrottled, false
	}
	vs := w.fillVerifyState(s, a)
	began := time.Now()
	v := s.val.Commit(w.ctx, c, hs.name, vs, &s.ids)
	w.m.validation.UpdateDuration(began)
	if s.ids.parked {
		return mustPark, false
	}
	if v.Action != verify.Accept {
		w.m.reject(v.Reason.String())
		return noDrop, false
	}
	if !w.admit(hs, a) {
		return DropHostThrottled, false
	}
	s.commit = *c
	s.commit.TooBig, s.commit.Rebase, s.commit.Blobs = false, false, nil
	out := w.bufs.Get(len(c.Blocks) + 1024)
	out.B = event.AppendCommit(out.B[:0], &s.commit)
	w.finish(s, hs, a, res, out, store.KindCommit, v.NewState, store.StatusUnchanged)
	if v.Break != verify.BreakNone {
		w.m.chainBreak(v.Break.String())
		if a.local != store.LocalDesynchronized {
			res.ev.Local = store.LocalDesynchronized
		}
		w.desync(a, hs)
	}
	return 0, true
}

func (w *accountWorkers) processSync(s *scratch, hs *hostState, sy *event.Sync, res *result) (DropReason, bool) {
	a, err := w.load(s, sy.DID)
	if err != nil {
		w.fail(err)
		return DropShutdown, false
	}
	if a.known && a.local == store.LocalHostThrottled {
		return DropHostThrottled, false
	}
	vs := w.fillVerifyState(s, a)
	began := time.Now()
	v := s.val.Sync(w.ctx, sy, hs.name, vs, &s.ids)
	w.m.validation.UpdateDuration(began)
	if s.ids.parked {
		return mustPark, false
	}
	switch {
	case v.Action == verify.Accept:
	case v.Action == verify.Ignore && v.Reason == verify.ReasonStaleRev && bytes.Equal(sy.Rev, a.rev()):
		// A #sync restating the current state (the reference PDS sends one
		// on reactivation) is valid and forwarded; the store logs it as a
		// no-op on the account row.
		v.NewState = verify.State{Rev: a.rev(), Commit: cid.CID(a.commit()), Data: cid.CID(a.data())}
	default:
		w.m.reject(v.Reason.String())
		return noDrop, false
	}
	if !w.admit(hs, a) {
		return DropHostThrottled, false
	}
	out := w.bufs.Get(len(sy.Blocks) + 512)
	out.B = event.AppendSync(out.B[:0], sy)
	w.finish(s, hs, a, res, out, store.KindSync, v.NewState, store.StatusUnchanged)
	if a.local == store.LocalDesynchronized {
		// A #sync resets the chain (§13.1): the account is in sync again,
		// durably with the event.
		a.local = store.LocalActive
		res.ev.Local = store.LocalActive
		w.resyncs.resynced(a.did())
	}
	return 0, true
}

// finish fills res with the output frame and the store event, and updates
// the overlay with the state the event establishes.
func (w *accountWorkers) finish(s *scratch, hs *hostState, a *acctState, res *result, out *bytebufferpool.ByteBuffer,
	kind store.Kind, ns verify.State, status store.AccountStatus) {
	res.frameLen = len(out.B)
	ev := store.Event{Kind: kind, Host: hs.id, Status: status}
	if kind == store.KindCommit || kind == store.KindSync {
		appendEventState(out, &ev, a.did(), &ns)
		s.overlay.setState(a, ev.Rev, ev.Commit, ev.Data)
		a.host = hs.id
	} else {
		appendEventState(out, &ev, a.did(), nil)
	}
	res.out, res.ev = out, ev
	a.known = true
	a.ticket = s.ticket + 1 // the ticket send will assign
}

// appendEventState copies the event's DID and, unless st is nil, the state
// it sets (rev, commit, data) into out after the output frame, and points
// ev's fields at the copies: the store event then lives as long as out,
// whatever happens to the frame and the overlay meanwhile.
func appendEventState(out *bytebufferpool.ByteBuffer, ev *store.Event, did string, st *verify.State) {
	b := out.B
	didAt := len(b)
	b = append(b, did...)
	ev.DID = b[didAt:len(b):len(b)]
	if st != nil {
		revAt := len(b)
		b = append(b, st.Rev...)
		cAt := len(b)
		b = append(b, st.Commit...)
		dAt := len(b)
		b = append(b, st.Data...)
		ev.Rev, ev.Commit, ev.Data = b[revAt:cAt], b[cAt:dAt], b[dAt:]
	}
	out.B = b
}
