package relay

import (
	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/engine/upstream"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/pool"
	"github.com/atrelay/relay/store"
)

// sequencer is the single goroutine that turns worker results into durable,
// published events: group commit into the store (store.Stage decides which
// events are logged; the sequencer gives those the next relay seqs, builds
// their output frames with the seq inside, and hands them to
// Staged.Commit), host cursors as the low-water mark of each host's
// tracker, publish to the hub only after the batch is durable, then
// advance the workers' durable marks and release buffers.
//
// The fields below the shared block are owned by the sequencer goroutine.
type sequencer struct {
	// Static after newSequencer; loop is set by New once built.
	cfg    *Config // the relay's, read-only
	st     *store.Store
	hub    *firehose.Hub
	frames *pool.Frames
	bufs   *pool.Buffers
	log    *slog.Logger
	m      *metricsSet
	loop   *upstream.Loop
	onPub  func()       // Deps.OnPublish; nil: none
	fail   func(error)  // Relay.fail: stops ingestion after a store error
	failed *atomic.Bool // the relay's: set once a store write failed

	// Shared with the workers (accountWorkers). results: workers send, run
	// drains it, Close closes it once the workers stopped. budget: workers
	// acquire, the sequencer releases (its own lock). durable[i]: the
	// sequencer stores worker i's last durable ticket, worker i reads it
	// (evict). heldNow: the sequencer stores heldBytes for the gauge.
	results chan result
	budget  byteBudget
	durable []atomic.Uint64
	heldNow atomic.Int64
	done    chan struct{} // closed when run returns
	// parked: the hosts whose lowest incomplete seq a worker parked
	// (accountWorkers.markParked); run then passes their held results.
	parked parkedHeads

	// in is what one drain of the results channel took; ready holds
	// results whose host seqs are complete up to theirs, and those that
	// passed a parked frame of their host (OrderAccount), in release
	// order; held holds, per host, results that finished before an earlier
	// seq of their host: persisting them first would put events above the
	// host's persisted cursor, to be processed twice after a crash (a
	// passing #commit is then dropped as stale, see passes).
	in      []result
	ready   []result
	held    map[*hostState]*heldList
	spare   []*heldList         // emptied held lists, reused so holding allocates nothing
	spareN  int                 // the spare lists' slots together
	staying map[uint64]struct{} // heldList.pass's scratch
	// parkedNow is passParked's scratch: the hosts it took from parked.
	parkedNow []*hostState
	tix       heldTickets // per worker: the tickets of the held results
	batch     []result
	events    []store.Event
	outcomes  []store.Outcome // what Stage decided for events[i]
	outs      []outFrame      // the output frame of events[i], if logged
	rows      []store.SeqEvent
	evHost    []*hostState         // host of events[i] when its store Host is set
	dirty     map[*hostState]int64 // cursors moved with no event to carry them
	marks     []uint64             // per worker: highest ticket in the batch
	// heldBytes is the memory of the held lists (heldList.memory, kept
	// by recount); heldBudget is the results budget of the results held
	// since the last settleHeld, to return to it.
	heldBytes, heldBudget int64
	// reach is, per host, the highest cursor among the results of the
	// batch being written: a result released in its host's order carries
	// its seq, the last of a release the host's low-water mark then
	// (heldList.release), and every result at or below that was released
	// before it (or dropped), so it is the host's cursor once this batch
	// (not a later one) is durable. A result that passed a parked frame
	// carries none.
	reach map[*hostState]int64
	// batchBytes and slowBatchBytes bound a group commit's frames after a
	// fast and after a slow commit (commitReady); lastCommit is how long
	// the last one took.
	batchBytes, slowBatchBytes int
	lastCommit                 time.Duration
	// next is the seq the next logged event gets. The sequencer is the
	// log's only writer, so it reads the store's newest seq once at start;
	// Commit checks every batch continues it.
	next store.Seq
}

// outFrame is one logged event's output: its relay seq and the frame the
// sequencer rewrote with it, a refcounted frame the hub publishes (the
// store copies the same bytes into its batch).
type outFrame struct {
	seq store.Seq
	f   *pool.Frame
	err error // the worker's frame was not canonical: f holds it unchanged
}

// frame rewrites a worker's frame with seq into a pooled frame.
func (q *sequencer) frame(out []byte, seq store.Seq) outFrame {
	f := q.frames.Get(len(out) + 16)
	b, err := event.RewriteEncodedSeq(f.Buffer().B[:0], out, int64(seq))
	if err != nil {
		// Workers only produce canonical frames; keep the batch going and
		// report the bug after the commit.
		b = append(b[:0], out...)
	}
	f.Buffer().B = b
	return outFrame{seq: seq, f: f, err: err}
}

// newSequencer builds the sequencer of r from its static fields; New
// starts run once the workers exist.
func newSequencer(r *Relay) *sequencer {
	n := r.cfg.MaxBatchEvents
	q := &sequencer{
		cfg: &r.cfg, st: r.st, hub: r.hub, frames: r.frames, bufs: r.bufs, log: r.log, m: r.m,
		onPub: r.onPub, fail: r.fail, failed: &r.failed,
		results:  make(chan result, r.cfg.ResultsQueue),
		durable:  make([]atomic.Uint64, r.cfg.Workers),
		done:     make(chan struct{}),
		batch:    make([]result, 0, n),
		events:   make([]store.Event, 0, n),
		outcomes: make([]store.Outcome, 0, n),
		outs:     make([]outFrame, n),
		rows:     make([]store.SeqEvent, 0, n),
		dirty:    make(map[*hostState]int64),
		reach:    make(map[*hostState]int64),
		marks:    make([]uint64, r.cfg.Workers),
		held:     make(map[*hostState]*heldList),
		staying:  make(map[uint64]struct{}),
		tix:      make(heldTickets, r.cfg.Workers),
		next:     r.st.NewestSeq() + 1,
	}
	q.parked.wake = make(chan struct{}, 1)
	q.budget.init(r.cfg.ResultsQueueBytes)
	q.batchBytes, q.slowBatchBytes = groupCommitBytes(r.st.MaxBatchBytes())
	return q
}

func (q *sequencer) run() {
	defer close(q.done)
	tick := time.NewTicker(q.cfg.CursorFlushInterval)
	defer tick.Stop()
	for {
		select {
		case res, ok := <-q.results:
			if !ok {
				q.flushCursors()
				return
			}
			q.in = append(q.in[:0], res)
		drain:
			for len(q.in) < cap(q.batch) {
				select {
				case res, ok := <-q.results:
					if !ok {
						break drain
					}
					q.in = append(q.in, res)
				default:
					break drain
				}
			}
			q.release()
			q.commitReady()
		case <-q.parked.wake:
			if q.passParked() {
				q.commitReady()
			}
		case <-tick.C:
			if q.sweepHeld() {
				q.commitReady()
			}
			q.flushCursors()
		}
	}
}

// maxBatchFrameBytes bounds the frame bytes of one group commit (a single
// larger frame still goes alone) while commits are fast. Pebble keeps its
// batch's buffer for reuse only up to 1 MiB: a larger batch is allocated
// afresh, doubling from small, at every commit; under backlog, with batches
// of MaxBatchEvents frames (~3 MB), that was 8 GB of the 31 GB the relay
// allocated in the production-scale run (PERF.md). A log row is its frame
// plus a key, and the account and cursor rows add ~200 bytes an event, so
// 640 KiB of frames keeps the batch under 1 MiB; at 1.6 KB a frame that
// is ~400 events, a few more commits a second under backlog.
const maxBatchFrameBytes = 640 << 10

// maxSlowBatchFrameBytes bounds the frame bytes of one group commit while
// commits are slow (slowCommit), with the store's MaxBatchBytes.
const maxSlowBatchFrameBytes = 8 << 20

// slowCommit is the group commit time from which the next group commit
// may take up to slowBatchBytes of frames instead of batchBytes. A commit
// normally takes a few milliseconds, most of it waiting for the WAL sync.
// When the sync slows down (on a saturated machine its goroutine waits as
// long for a CPU as it spends in fdatasync), a minute of commits of 20–300
// ms, a hundred of them at the 640 KiB bound, carried little more than the
// 2,000 events a second arriving: the results queue filled, the workers
// paused their hosts and events waited seconds (PERF.md, "Group commits
// while the WAL sync is slow").
// A sync costs about the same for a larger batch, so taking what is
// waiting keeps the sequencer ahead, at the price of allocating those
// batches' buffers afresh (Pebble keeps at most 1 MiB) while it lasts.
const slowCommit = 10 * time.Millisecond

// commitReady commits the ready results in order, in group commits of at
// most MaxBatchEvents results and batchBytes of frames, or slowBatchBytes
// after a slow commit. ready is emptied once at the end: moving what is
// left to its front after every batch would copy a long backlog once per
// batch. commit does not touch ready.
func (q *sequencer) commitReady() {
	for rest := q.ready; len(rest) > 0; {
		limit := q.batchBytes
		if q.lastCommit >= slowCommit {
			limit = q.slowBatchBytes
		}
		n := nextBatch(rest, cap(q.batch), limit)
		q.batch = append(q.batch[:0], rest[:n]...)
		rest = rest[n:]
		q.commit()
	}
	clear(q.ready)
	q.ready = q.ready[:0]
}

// nextBatch is how many of ready (non-empty) the next group commit takes:
// at most maxEvents, and at most maxBytes of frames unless the first frame
// alone is larger.
func nextBatch(ready []result, maxEvents, maxBytes int) int {
	n, bytes := 0, 0
	for n < len(ready) && n < maxEvents && (n == 0 || bytes+ready[n].frameLen <= maxBytes) {
		bytes += ready[n].frameLen
		n++
	}
	return n
}

// groupCommitBytes is how many bytes of frames a group commit takes after a
// fast and after a slow commit, for a store that takes storeMax bytes of
// frames a batch (store.MaxBatchBytes).
func groupCommitBytes(storeMax int) (fast, slow int) {
	fast = min(maxBatchFrameBytes, storeMax)
	slow = max(fast, min(maxSlowBatchFrameBytes, storeMax))
	return fast, slow
}

// GroupCommitBytes is the most a group commit makes the store hold beyond
// the results it writes, for the memory ledger: Pebble's batch of the
// largest group commit, its frames and a fifth more of keys and account
// rows, in a buffer grown by doubling. storeMax is the store's
// MaxBatchBytes.
func GroupCommitBytes(storeMax int) int64 {
	_, slow := groupCommitBytes(storeMax)
	return int64(slow) * 5 / 4 * 2
}

// release completes the seqs of the incoming results in their hosts'
// trackers and moves to ready every result whose host is complete up to
// its seq (per host in seq order, which keeps each account's order: one
// account's seqs rise with its events). With OrderAccount, so does a
// result that may pass (passes) while its host waits for a parked frame,
// unless its account has a result held. The rest wait in held.
func (q *sequencer) release() {
	for _, res := range q.in {
		hs := res.hs
		if hs == nil && q.followHeld(&res) {
			continue
		}
		if hs == nil || res.gen != hs.tr.generation() {
			// Relay-generated, or orphaned by a cursor reset: no order
			// to keep with the host's other frames.
			q.ready = append(q.ready, res)
			continue
		}
		low, moved := hs.tr.complete(res.gen, res.seq)
		if !moved && res.seq > low && q.passing(&res) {
			q.ready = append(q.ready, res)
			q.m.passed.Inc()
			continue
		}
		if res.seq <= low && q.held[hs] == nil {
			// Nothing of hs is held (the usual case): res alone is
			// released, and carries its host's cursor, as the last of a
			// release does (heldList.release).
			res.cursor = low
			q.ready = append(q.ready, res)
			continue
		}
		l := q.heldOf(hs)
		if res.seq > low {
			q.unbudget(&res)
		}
		l.insert(res)
		if !moved && res.seq > low {
			q.settle(hs, l)
			continue
		}
		// Release, in seq order, everything of hs now at or below low,
		// before any later incoming result of hs; then what may pass the
		// host's next frame, if parked.
		q.ready = l.release(q.ready, res.gen, low)
		q.passHeld(hs, l)
		q.settle(hs, l)
	}
	clear(q.in)
	q.settleHeld()
}

// passing reports whether res, an incoming result of its host's current
// generation above the host's low-water mark, may be released at once:
// OrderAccount, a result that passes, its host's lowest incomplete seq
// parked for an identity, and no result of its account held (they came
// from the same worker first, so they are all here or released).
func (q *sequencer) passing(res *result) bool {
	if q.cfg.Order != OrderAccount || !passes(res) || !res.hs.tr.headParked(res.gen) {
		return false
	}
	l := q.held[res.hs]
	return l == nil || res.out == nil || !l.holds(res)
}

// passHeld releases, with OrderAccount, the results of hs's held list l
// that may pass while hs's lowest incomplete seq is parked.
func (q *sequencer) passHeld(hs *hostState, l *heldList) {
	if q.cfg.Order != OrderAccount || l.empty() || l.mixed || !hs.tr.headParked(l.gen) {
		return
	}
	before := len(q.ready)
	q.ready = l.pass(q.ready, q.staying)
	q.m.passed.Add(len(q.ready) - before)
}

// settle follows a change to hs's held list l: its memory into heldBytes,
// hs paused or resumed for it (holdBack), and l dropped once empty.
func (q *sequencer) settle(hs *hostState, l *heldList) {
	q.recount(l)
	q.holdBack(hs, l)
	q.dropIfEmpty(hs, l)
}

// recount brings heldBytes up to date with l after a change to l.
func (q *sequencer) recount(l *heldList) {
	m := l.memory()
	q.heldBytes += m - l.counted
	l.counted = m
}

// unbudget takes res, about to wait in a held list, out of the results
// budget: its bytes count under MaxHeldBytes from now (returned to the
// budget at settleHeld).
func (q *sequencer) unbudget(res *result) {
	q.heldBudget += res.budget
	res.budget = 0
}

// settleHeld returns to the results budget the bytes of the results held
// since the last call (they count under MaxHeldBytes instead), in one
// call for a drain, and publishes heldBytes for the gauge. A held result
// waits for an earlier frame of its host that may be parked or queued on
// a worker; if it kept its place in the results budget, a worker could
// wait in send for room only that frame's release would make, while the
// frame waits behind the worker: ingestion would stop.
func (q *sequencer) settleHeld() {
	if q.heldBudget > 0 {
		q.budget.release(q.heldBudget)
		q.heldBudget = 0
	}
	q.heldNow.Store(q.heldBytes)
}

// heldOf returns hs's held list, taking a spare one if hs holds nothing.
func (q *sequencer) heldOf(hs *hostState) *heldList {
	l := q.held[hs]
	if l == nil {
		if n := len(q.spare); n > 0 {
			l, q.spare = q.spare[n-1], q.spare[:n-1]
			q.spareN -= cap(l.r)
		} else {
			l = &heldList{tix: q.tix}
		}
		q.held[hs] = l
	}
	return l
}

// dropIfEmpty forgets hs's held list once it holds nothing, keeping the
// list for reuse.
func (q *sequencer) dropIfEmpty(hs *hostState, l *heldList) {
	if !l.empty() {
		return
	}
	q.heldBytes -= l.counted
	l.counted = 0
	delete(q.held, hs)
	if len(q.spare) < maxSpareHeld && q.spareN+cap(l.r) <= maxSpareHeldSlots {
		q.spare = append(q.spare, l)
		q.spareN += cap(l.r)
	}
}

// followHeld queues a relay-generated result (a resync's #sync, a
// takedown's #account) behind the last held result of the same account,
// so it cannot overtake that account's earlier events: the worker produced
// them first. It reports whether the result was queued.
func (q *sequencer) followHeld(res *result) bool {
	h, ok := res.accountHash()
	if !ok || len(q.held) == 0 {
		return false
	}
	var host *hostState
	var last *result
	for hs, l := range q.held {
		if l.accounts[h] == 0 {
			continue
		}
		items := l.items()
		for i := range items {
			x := &items[i]
			if sameAccount(x, res) && (last == nil || x.seq > last.seq) {
				host, last = hs, x
			}
		}
	}
	if last == nil {
		return false
	}
	res.hs, res.gen, res.seq, res.follows = host, last.gen, last.seq, true
	q.unbudget(res)
	l := q.held[host]
	l.insert(*res)
	q.recount(l)
	return true
}

// passParked releases the held results that may pass the parked lowest
// frame of the hosts the workers reported (parkedHeads), and reports
// whether any became ready.
func (q *sequencer) passParked() bool {
	before := len(q.ready)
	q.parkedNow = q.parked.take(q.parkedNow[:0])
	for _, hs := range q.parkedNow {
		if l := q.held[hs]; l != nil {
			q.passHeld(hs, l)
			q.settle(hs, l)
		}
	}
	clear(q.parkedNow)
	q.settleHeld()
	return len(q.ready) > before
}

// sweepHeld releases held results that no incoming result will release:
// those at or below their host's low-water mark (moved by a completion
// outside the sequencer, such as a frame dropped before it reached a
// worker), those orphaned by a cursor reset, and those that may pass a
// host's parked frame. run calls it on the tick; a worker parking a host's
// lowest incomplete seq wakes passParked, for that host alone. It reports
// whether any result became ready.
func (q *sequencer) sweepHeld() bool {
	before := len(q.ready)
	for hs, l := range q.held {
		q.ready = l.release(q.ready, hs.tr.generation(), hs.tr.lowWater())
		q.passHeld(hs, l)
		q.settle(hs, l)
	}
	q.settleHeld()
	return len(q.ready) > before
}

// holdBack pauses a host whose held results take more than HostHeldBytes
// (they wait for an earlier frame of the host still in a worker: parked
// for its identity, or slow to validate), or that holds any while all
// hosts together hold more than MaxHeldBytes, and resumes it once both
// are down to half, or once it holds nothing. Held results are out of
// the results budget (settleHeld), so this pause is what bounds them: a
// paused host sends nothing more, and what it already sent is in the
// intake.
func (q *sequencer) holdBack(hs *hostState, l *heldList) {
	limit, total := q.cfg.HostHeldBytes, q.cfg.MaxHeldBytes
	held := l.memory()
	over := !l.empty() && (held > limit || q.heldBytes > total)
	under := l.empty() || (held <= limit/2 && q.heldBytes <= total/2)
	switch {
	case over && !hs.heldBack.Load():
		hs.heldBack.Store(true)
		q.m.hostPauses[pauseHeld].Inc()
	case under && hs.heldBack.Load():
		hs.heldBack.Store(false)
		if up := hs.up.Load(); up != nil {
			q.loop.Resume(up)
		}
	}
}

// maxSpareHeld bounds the emptied held lists kept for reuse: about as many
// hosts as have results held at once under load. maxSpareHeldSlots bounds
// their slots together (heldSlotBytes each, about 1.3 MiB in all): once held
// results no longer count them (heldList.memory), a list grown long
// behind a slow frame goes to the garbage collector instead.
const (
	maxSpareHeld      = 256
	maxSpareHeldSlots = 4096
)

// commit writes one batch of released results.
func (q *sequencer) commit() {
	q.events = q.events[:0]
	q.evHost = q.evHost[:0]
	clear(q.marks)
	clear(q.reach)
	for i := range q.batch {
		res := &q.batch[i]
		if res.ticket > q.marks[res.worker] {
			q.marks[res.worker] = res.ticket
		}
		if hs := res.hs; hs != nil && res.gen == hs.tr.generation() && res.cursor > q.reach[hs] {
			q.reach[hs] = res.cursor
		}
		if res.out == nil {
			continue
		}
		ev := res.ev
		q.events = append(q.events, ev)
		if ev.Host != store.HostNone {
			q.evHost = append(q.evHost, res.hs)
		} else {
			q.evHost = append(q.evHost, nil)
		}
	}
	// Attach each host's cursor to its last event of the batch; hosts with
	// only dropped frames in it wait in dirty for the periodic flush (set
	// below, once the batch is durable).
	for i := len(q.events) - 1; i >= 0; i-- {
		hs := q.evHost[i]
		if hs == nil {
			continue
		}
		if c, ok := q.reach[hs]; ok && c > 0 {
			q.events[i].Cursor = uint64(hs.q.cap(c))
			delete(q.reach, hs)
			delete(q.dirty, hs)
		}
	}
	if q.failed.Load() {
		q.abandon(DropShutdown)
		q.releaseBudget()
		return
	}
	if len(q.events) > 0 {
		began := time.Now()
		err := q.write()
		q.lastCommit = time.Since(began)
		q.m.commitSeconds.Update(q.lastCommit.Seconds())
		q.m.batchEvents.Update(float64(len(q.events)))
		if err != nil {
			q.fail(err)
			q.abandon(DropShutdown)
			q.releaseBudget()
			return
		}
	}
	for hs, c := range q.reach {
		if c > q.dirty[hs] {
			q.dirty[hs] = c
		}
	}
	q.publish()
	q.afterCommit()
	for w, t := range q.marks {
		// A held result of this worker is not durable: no overlay entry
		// at or above its ticket may be evicted yet.
		if m := q.tix.lowest(w); m > 0 && t >= m {
			t = m - 1
		}
		if t > q.durable[w].Load() {
			q.durable[w].Store(t)
		}
	}
}

// write stages the batch's events, gives the logged ones the next seqs and
// their output frames, and commits them: one Pebble batch, one WAL sync.
// Each event's frame is in q.outs (nil f when dropped as stale), also on
// error, for publish or abandon to hand on or release.
func (q *sequencer) write() error {
	clear(q.outs[:len(q.events)])
	staged, outcomes, err := q.st.Stage(q.events, q.outcomes[:0])
	q.outcomes = outcomes
	if err != nil {
		return err
	}
	q.rows = q.rows[:0]
	j := 0
	for i := range q.batch {
		res := &q.batch[i]
		if res.out == nil {
			continue
		}
		if ev := &q.events[j]; q.outcomes[j].Logged() {
			seq := q.next + store.Seq(len(q.rows))
			q.outs[j] = q.frame(res.out.B[:res.frameLen], seq)
			q.rows = append(q.rows, store.SeqEvent{Seq: seq, Kind: ev.Kind, DID: ev.DID, Frame: q.outs[j].f.Buffer().B})
		}
		j++
	}
	if err := staged.Commit(q.rows); err != nil {
		return err
	}
	q.next += store.Seq(len(q.rows))
	return nil
}

// publish hands durable frames to the hub and releases worker buffers.
// relay_pipeline_seconds takes each published event's time from its
// frame's arrival at the Sink: the relay's own share of a consumer's
// delay (identity waits, queues, validation, the group commit), apart
// from the host before it and the consumer's socket after it.
// relay_pipeline_identity_cached_seconds takes the events that did not
// wait for their own account's DID document: the relay's delay without
// the directory's (what is left of it is waiting behind other frames).
func (q *sequencer) publish() {
	var now time.Time
	j := 0
	for i := range q.batch {
		res := &q.batch[i]
		if res.out == nil {
			continue
		}
		out := &q.outs[j]
		j++
		if out.err != nil {
			q.log.Error("BUG: worker produced a non-canonical frame", "err", out.err)
		}
		if out.f == nil {
			q.m.dropped[DropStale].Inc()
		} else {
			q.m.accepted[res.kind].Inc()
			if !res.start.IsZero() {
				if now.IsZero() {
					now = time.Now()
				}
				d := now.Sub(res.start).Seconds()
				q.m.pipeline.Update(d)
				if !res.waited {
					q.m.pipelineCached.Update(d)
				}
			}
			if err := q.hub.Publish(uint64(out.seq), out.f); err != nil {
				out.f.Release()
				q.log.Warn("firehose publish failed", "seq", out.seq, "err", err)
			}
		}
		out.f = nil
		q.bufs.Put(res.out)
		res.out = nil
	}
	if j > 0 && q.onPub != nil {
		q.onPub()
	}
}

// afterCommit applies the local-status changes of results without an
// event, now that every earlier event of their accounts is durable, and
// returns the batch's share of the results budget.
func (q *sequencer) afterCommit() {
	for i := range q.batch {
		res := &q.batch[i]
		if res.localAfter != 0 && res.did != "" {
			if err := q.st.SetLocalStatus([]byte(res.did), res.localAfter); err != nil {
				q.log.Warn("cannot set local status", "did", res.did, "err", err)
			}
		}
	}
	q.releaseBudget()
}

// releaseBudget returns the batch's bytes to the results budget.
func (q *sequencer) releaseBudget() {
	var n int64
	for i := range q.batch {
		n += q.batch[i].budget
		q.batch[i].budget = 0
	}
	if n > 0 {
		q.budget.release(n)
	}
}

// abandon releases a batch that will not be written (store failure).
func (q *sequencer) abandon(reason DropReason) {
	for i := range q.outs[:len(q.events)] {
		if f := q.outs[i].f; f != nil {
			f.Release()
			q.outs[i].f = nil
		}
	}
	for i := range q.batch {
		if q.batch[i].out != nil {
			q.m.dropped[reason].Inc()
			q.bufs.Put(q.batch[i].out)
			q.batch[i].out = nil
		}
	}
}

// flushCursors persists cursors that moved without an event to carry them.
func (q *sequencer) flushCursors() {
	if q.failed.Load() {
		return
	}
	for hs, low := range q.dirty {
		low = hs.q.cap(low)
		if _, err := q.st.UpdateHost(hs.id, func(h *store.Host) { h.Cursor = uint64(low) }); err != nil {
			q.log.Warn("cannot persist host cursor", "host", hs.name, "err", err)
		}
		delete(q.dirty, hs)
	}
}
