package relay

import (
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/verify"
	"github.com/atrelay/relay/store"
)

// Panics (issue 12, point 9). The code that reads a host's bytes (Peek on
// the upstream reader, decode, verification and account state on a worker)
// is fuzzed, but a panic it still hides must not kill the process: the
// host's cursor precedes the frame, so a restart would replay it into a
// crash loop. A panic while handling a frame is recovered where the frame
// is handled, counted (relay_frame_panics_total{stage}), logged once with
// host, seq and a truncated stack, and the host is quarantined:
//
//   - it is unsubscribed at once and its frames still in the pipeline are
//     dropped unprocessed (relay_events_dropped_total{reason="quarantined"});
//   - its persisted status becomes hostQuarantined, so a restart does not
//     dial it and a public requestCrawl does not revive it; an operator
//     resumes it with an admin requestCrawl or unban once the relay is fixed;
//   - its persisted cursor stays below the frame that panicked, so the
//     resumed host replays that frame and everything after it: nothing is
//     lost. Frames of other accounts of the host accepted concurrently are
//     replayed too (commits are then refused as stale; #identity and
//     #account are forwarded again).
//
// The frame's seq is still completed in the host's tracker, so the
// sequencer never waits for it. The worker keeps serving other hosts. A
// panic in the decoder or validator leaves the account's overlay entry as
// it was (they run before the worker changes it); the worker's decoder and
// validator are rebuilt, since the panic may have left them half-way.

// hostQuarantined is how a quarantined host is persisted and reported:
// com.atproto.sync.defs#hostStatus has no value for it, and "throttled"
// (the relay holds the host back) is the closest. KillUpstream holds a
// host the same way: a public requestCrawl of a throttled host answers
// ErrHostHeld until an operator resumes it (AdminRequestCrawl or
// UnbanHost).
const hostQuarantined = store.HostThrottled

// Panic stages, the label of relay_frame_panics_total.
const (
	stageSink    = iota // the upstream reader's Sink (Peek, dispatch)
	stageWorker         // a worker handling a frame
	stageControl        // a worker running an account action (resync head, takedown …)
	numStages
)

var stageLabels = [numStages]string{"sink", "worker", "control"}

// maxPanicStack bounds the stack logged with a panic.
const maxPanicStack = 8 << 10

// testPanicHook, when set, is called by the Sink with the DID of every frame
// it dispatches (stage "sink") and by the worker with the DID of every frame
// it processes (stage "worker"), so a test can make one account's frames
// panic through a real host. Test-only: nothing outside tests sets it, and
// it costs one nil check per frame at each site. Set it before New and
// clear it after Close.
var testPanicHook func(stage string, did []byte)

// quarantine is a host's fault state. Set once; cleared only by building a
// new hostState (an operator resumed the host). Safe for concurrent use.
type quarantine struct {
	on atomic.Bool
	// cursor bounds the host's persisted cursor while on: the seq just
	// below the first frame that panicked. Written before on.
	cursor atomic.Int64
	mu     sync.Mutex // serialises enter
}

// active reports whether the host is quarantined.
func (q *quarantine) active() bool { return q.on.Load() }

// cap returns the cursor that may be persisted for a host whose tracker is
// at c.
func (q *quarantine) cap(c int64) int64 {
	if q.on.Load() {
		return min(c, q.cursor.Load())
	}
	return c
}

// enter quarantines the host with its cursor bounded by cursor and reports
// whether this call did it (a concurrent panic of the same host only lowers
// the bound).
func (q *quarantine) enter(cursor int64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.on.Load() {
		if cursor < q.cursor.Load() {
			q.cursor.Store(cursor)
		}
		return false
	}
	q.cursor.Store(cursor)
	q.on.Store(true)
	return true
}

// quarantine handles a panic recovered while handling a frame of hs at seq
// (0 when the frame's seq is unknown): it counts it and, the first time for
// the host, logs it and quarantines the host with its cursor below seq (at
// cursor when seq is 0). Runs on the goroutine that panicked.
func (ht *hostTable) quarantine(stage int, hs *hostState, seq, cursor int64, v any) {
	ht.m.framePanics[stage].Inc()
	if hs == nil || !hs.q.enter(cursor) {
		return
	}
	stack := debug.Stack()
	if len(stack) > maxPanicStack {
		stack = stack[:maxPanicStack]
	}
	msg := fmt.Sprint(v)
	if len(msg) > 512 {
		msg = msg[:512]
	}
	ht.log.Error("PANIC while handling a frame: host quarantined until an operator resumes it (admin requestCrawl)",
		"host", hs.name, "seq", seq, "stage", stageLabels[stage], "panic", msg, "stack", string(stack))
	if _, err := ht.st.UpdateHost(hs.id, func(h *store.Host) {
		h.Status = hostQuarantined
		h.Cursor = uint64(min(int64(h.Cursor), cursor))
	}); err != nil {
		ht.log.Error("cannot persist a host's quarantine; a restart would dial it again", "host", hs.name, "err", err)
	}
	ht.unsubscribe(hs)
}

// unsubscribe stops reading hs, unless the host was resubscribed since
// (then hs is stale and the live state is left alone).
func (ht *hostTable) unsubscribe(hs *hostState) {
	ht.mu.Lock()
	if ht.byName[hs.name] == hs {
		delete(ht.byName, hs.name)
		delete(ht.byID, hs.id)
	}
	ht.mu.Unlock()
	if up := hs.up.Load(); up != nil {
		ht.loop.Remove(up)
	}
}

// processGuarded is process with a panic recovered: the frame is then
// dropped (res carries no event), its host quarantined and the worker's
// decoder and validator rebuilt.
func (w *accountWorkers) processGuarded(s *scratch, t task, res *result) (reason DropReason, ok bool) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		w.hosts.quarantine(stageWorker, t.hs, t.seq, t.seq-1, v)
		if res.out != nil {
			w.bufs.Put(res.out)
		}
		*res = result{hs: res.hs, seq: res.seq, gen: res.gen, worker: res.worker, start: res.start, kind: res.kind}
		w.resetScratch(s)
		reason, ok = DropPanic, false
	}()
	return w.process(s, t, res)
}

// runControlGuarded is runControl with a panic recovered: the action fails
// (its caller gets an error) and the worker's state is rebuilt. The
// account's host is not quarantined: an action is not a host's frame.
func (w *accountWorkers) runControlGuarded(s *scratch, t task) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		w.m.framePanics[stageControl].Inc()
		stack := debug.Stack()
		if len(stack) > maxPanicStack {
			stack = stack[:maxPanicStack]
		}
		w.log.Error("PANIC while running an account action", "did", t.ctl.did, "panic", fmt.Sprint(v), "stack", string(stack))
		w.resetScratch(s)
		select {
		case t.ctl.done <- fmt.Errorf("relay: internal error: %v", v):
		default: // the action already answered
		}
	}()
	w.runControl(s, t)
}

// resetScratch replaces the parts of a worker's state a panic may have left
// half-way (allocates; only after a panic).
func (w *accountWorkers) resetScratch(s *scratch) {
	s.dec = event.Decoder{}
	s.msg = event.Message{}
	s.val = verify.New(verify.Config{Mode: w.cfg.Validation, Now: w.now})
	s.commit = event.Commit{}
}
