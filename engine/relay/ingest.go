package relay

import (
	"context"
	"errors"
	"github.com/atrelay/relay/engine/identity"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/upstream"
	"github.com/atrelay/relay/pool"
)

// bucket is a token bucket of events per second with one second of burst.
// Over-limit hosts are paused until a token is due, never dropped (§14.4).
// Guarded by its hostState's mu.
type bucket struct {
	rate   float64 // tokens per second
	tokens float64
	last   time.Time
}

func (b *bucket) init(rate float64, now time.Time) {
	b.rate, b.tokens, b.last = rate, rate, now
}

// take spends one token; when none is left it returns how long until one is.
func (b *bucket) take(now time.Time) (wait time.Duration, ok bool) {
	if b.rate <= 0 {
		return 0, true
	}
	b.tokens += now.Sub(b.last).Seconds() * b.rate
	if b.tokens > b.rate {
		b.tokens = b.rate
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	b.tokens--
	return time.Duration(-b.tokens / b.rate * float64(time.Second)), false
}

// task is one unit of worker input: an upstream frame, or a control action
// on one account (takedown, restore, unthrottle) when ctl is set.
type task struct {
	hs    *hostState
	f     upstream.Frame
	did   []byte // the frame's DID (Peek), a view valid until f is released
	seq   int64
	gen   uint64
	kind  event.Kind
	parks uint8 // times the frame parked for an identity (park.go)
	// behind: the frame waited behind a parked frame of its account
	// (parkBehind), that is for its account's DID document too.
	behind bool
	ctl    *control
	start  time.Time
}

// sinkGuard is what the Sink's panic handler needs to know about the frame
// it was handling: whether the frame is still the Sink's to release, and
// whether its seq was registered (then it must be completed). It lives on
// the Sink's stack.
type sinkGuard struct {
	f          upstream.Frame
	t          task // valid once registered
	seq        int64
	owned      bool // f not yet released or handed to the pool or the resumer
	registered bool
}

// release releases the frame the Sink is done with.
func (g *sinkGuard) release() {
	g.owned = false
	g.f.Release()
}

// ingest is the intake stage: the upstream loop's Sink (peek, order
// check, rate limit, dispatch to the workers), the resumer that submits
// what a full pool refused, and the loop's Cursor and OnConnect callbacks.
// Its methods run on the loop's reader goroutines (one Sink call per host
// at a time), the resumer goroutine and rate-limit timers; its own state
// is the resume channel, the rest lives on hostState (doc.go, Ownership).
type ingest struct {
	// Static after New; loop is set by New once built (it needs the
	// Sink), before any host is subscribed.
	m      *metricsSet
	log    *slog.Logger
	now    func() time.Time
	ids    *identity.Resolver
	hosts  *hostTable
	failed *atomic.Bool    // the relay's: set once a store write failed
	ctx    context.Context // ends after the workers drained (Close)
	loop   *upstream.Loop
	pool   *pool.Workers[task, scratch]

	// resume carries hosts with refused frames to the resumer. Sent to by
	// Sinks; closed by Close once the loop stopped.
	resume chan *hostState
}

// sink is the upstream.Sink: peek, order check, register, dispatch. A panic
// on the way is recovered: the frame is dropped and its host quarantined
// (see faults.go), and the reader goroutine keeps serving other hosts.
func (in *ingest) sink(h *upstream.Host, f upstream.Frame) (keep bool) {
	hs, _ := h.Value().(*hostState)
	if hs == nil {
		f.Release()
		return true
	}
	n := f.Len()
	in.m.framesIn.Inc()
	in.m.bytesIn.Add(n)
	hs.framesIn.Add(1)
	hs.bytesIn.Add(int64(n))
	if in.failed.Load() {
		in.m.dropped[DropShutdown].Inc()
		f.Release()
		return false
	}
	if hs.q.active() {
		// Read before the loop acted on the quarantine's Remove.
		in.m.dropped[DropQuarantined].Inc()
		f.Release()
		return false
	}
	g := sinkGuard{f: f, owned: true}
	defer func() {
		if v := recover(); v != nil {
			in.sinkPanicked(hs, &g, v)
			keep = false
		}
	}()
	return in.dispatch(hs, &g)
}

// sinkPanicked cleans up after a panic in dispatch: the frame is dropped
// (its seq completed if it was registered) and the host quarantined with
// its cursor below the frame.
func (in *ingest) sinkPanicked(hs *hostState, g *sinkGuard, v any) {
	cursor := hs.tr.lastSeq() // every registered frame is in the pipeline
	if g.registered {
		cursor = g.t.seq - 1
	}
	in.hosts.quarantine(stageSink, hs, g.seq, cursor, v)
	if !g.owned {
		return
	}
	g.owned = false
	if g.registered {
		in.completeDropped(g.t, DropPanic)
		return
	}
	in.m.dropped[DropPanic].Inc()
	g.f.Release()
}

// dispatch is the Sink's work on one frame of hs. It keeps g current, so a
// panic handler knows what to undo.
func (in *ingest) dispatch(hs *hostState, g *sinkGuard) bool {
	f := g.f
	var p event.Peeked
	if err := event.Peek(f.Bytes(), &p); err != nil {
		in.m.dropped[DropMalformed].Inc()
		g.release()
		return true
	}
	g.seq = p.Seq
	if testPanicHook != nil {
		testPanicHook("sink", p.DID)
	}
	switch p.Kind {
	case event.KindError:
		in.upstreamError(hs, p.Name)
		in.m.dropped[DropErrorFrame].Inc()
		g.release()
		return true
	case event.KindInfo:
		if ok, suppressed := hs.logAllowed(); ok {
			in.log.Info("upstream #info", "host", hs.name, "name", upstream.LogString(p.Name), "suppressed", suppressed)
		}
		in.m.dropped[DropInfo].Inc()
		g.release()
		return true
	case event.KindUnknown:
		in.m.dropped[DropUnknownKind].Inc()
		g.release()
		return true
	}
	if !p.HasSeq || p.Seq <= 0 || len(p.DID) == 0 {
		in.m.dropped[DropMalformed].Inc()
		g.release()
		return true
	}
	if last := hs.tr.lastSeq(); p.Seq <= last {
		if !hs.fresh {
			in.m.dropped[DropOutOfOrder].Inc()
			g.release()
			return true
		}
		// The first frame of a connection at or below the cursor we dialed
		// with: the host's sequence went backwards (it lost its database).
		// Restart tracking just below it instead of stalling forever.
		in.m.cursorResets[resetSeqBackwards].Inc()
		in.log.Warn("host seq went backwards; resetting its cursor", "host", hs.name, "cursor", last, "seq", p.Seq)
		hs.tr.reset(p.Seq - 1)
		in.hosts.persistCursor(hs)
	}
	hs.fresh = false
	t := task{hs: hs, f: f, did: p.DID, seq: p.Seq, kind: p.Kind, start: in.now()}
	t.gen = hs.tr.register(p.Seq)
	g.t, g.registered = t, true
	keep := true
	hs.mu.Lock()
	wait, ok := hs.rate.take(t.start)
	if len(hs.pending) > 0 {
		// Earlier frames of this host still wait for room in the pool:
		// this one queues behind them, so no account's events overtake
		// each other (a rate-limit resume can deliver a frame while the
		// resumer has not submitted the refused ones yet).
		hs.pending = append(hs.pending, t)
		g.owned = false
		hs.mu.Unlock()
		return false
	}
	hs.mu.Unlock()
	if !ok {
		in.m.hostPauses[pauseRateLimit].Inc()
		up := hs.up.Load()
		time.AfterFunc(wait, func() { in.loop.Resume(up) })
		keep = false
	} else {
		// Start resolving an identity the cache lacks now (or, for
		// #identity, the fresh document its worker will ask for), while
		// the frame waits for its worker, so workers do not take turns
		// waiting on the directory one account at a time. Only within
		// the host's rate: a host over it gets no resolution started
		// ahead (its frame's worker resolves when it gets there).
		if p.Kind == event.KindIdentity {
			in.ids.Refresh(p.DID, identityTag(hs, p.Seq))
		} else {
			in.ids.Prefetch(p.DID)
		}
	}
	// Queues count what frames hold (buffer capacity), not their length:
	// frames just over a buffer class hold up to 8 times their size.
	switch err := in.pool.TrySubmitBytes(p.DID, t, int64(f.Cap())); {
	case err == nil:
		g.owned = false
		return keep && !hs.heldBack.Load()
	case errors.Is(err, pool.ErrQueueFull):
		in.m.hostPauses[pausePoolFull].Inc()
		hs.mu.Lock()
		hs.pending = append(hs.pending, t)
		g.owned = false
		first := len(hs.pending) == 1
		hs.mu.Unlock()
		if first {
			in.resume <- hs
		}
		return false
	default:
		g.owned = false
		in.completeDropped(t, DropShutdown)
		return false
	}
}

// resumer submits the frames a full pool refused, blocking until there is
// room, then lets their hosts read again. One goroutine, so a stall costs
// nothing per host beyond its pending tasks (one, plus at most one per
// rate-limit resume that raced with the refusal).
func (in *ingest) resumer() {
	for hs := range in.resume {
		for {
			hs.mu.Lock()
			if len(hs.pending) == 0 {
				hs.pending = hs.pending[:0]
				hs.mu.Unlock()
				break
			}
			t := hs.pending[0]
			hs.mu.Unlock()
			err := in.pool.SubmitBytes(in.ctx, t.did, t, int64(t.f.Cap()))
			if err != nil {
				in.completeDropped(t, DropShutdown)
			}
			// Pop only after submitting, so the Sink keeps queueing behind
			// this task until it is in the pool.
			hs.mu.Lock()
			hs.pending = append(hs.pending[:0], hs.pending[1:]...)
			hs.mu.Unlock()
		}
		in.loop.Resume(hs.up.Load())
	}
}

// completeDropped releases a task that never reached a worker and still
// completes its seq, so the host cursor can move past it.
func (in *ingest) completeDropped(t task, reason DropReason) {
	in.m.dropped[reason].Inc()
	t.f.Release()
	if t.hs != nil {
		t.hs.tr.complete(t.gen, t.seq)
	}
}

// upstreamError handles an error frame from a host (op -1).
// The loop ends the stream after an error frame and backs the host off like
// a failed dial; log lines carrying the host's text are rate-limited per
// host (Host.LogAllowed) and cut short (upstream.LogString).
func (in *ingest) upstreamError(hs *hostState, name []byte) {
	logOK, suppressed := hs.logAllowed()
	if string(name) != "FutureCursor" {
		if logOK {
			in.log.Warn("upstream error frame", "host", hs.name, "error", upstream.LogString(name), "suppressed", suppressed)
		}
		return
	}
	// Our cursor is past the host's head: the host lost data or was
	// restored from a backup. Start over live rather than stall (§9.3).
	in.m.cursorResets[resetFutureCursor].Inc()
	if logOK {
		in.log.Warn("host answered FutureCursor; resetting its cursor", "host", hs.name, "cursor", hs.dialCursor, "suppressed", suppressed)
	}
	hs.tr.reset(0)
	in.hosts.persistCursor(hs)
	in.loop.Reconnect(hs.up.Load(), -1)
}

// onConnect marks the next frame as the first of a connection.
func (in *ingest) onConnect(h *upstream.Host) {
	if hs, _ := h.Value().(*hostState); hs != nil {
		hs.fresh = true
	}
}

// cursorFor is upstream.Config.Cursor: the highest seq handed to the
// pipeline (every frame at or below it is being processed and will be
// durable), so a reconnect never re-reads what is in flight.
func (in *ingest) cursorFor(h *upstream.Host) (int64, bool) {
	hs, _ := h.Value().(*hostState)
	if hs == nil {
		return 0, false
	}
	c := hs.tr.lastSeq()
	hs.dialCursor = c
	return c, c > 0
}

// logAllowed reports whether a log line carrying the host's own text may be
// written now (upstream.Host.LogAllowed); a host without a connection has
// no limiter and is allowed.
func (hs *hostState) logAllowed() (ok bool, suppressed uint64) {
	if h := hs.up.Load(); h != nil {
		return h.LogAllowed()
	}
	return true, 0
}
