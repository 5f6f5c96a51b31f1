package jetstream

import (
	"errors"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atrelay/relay/engine/fanout"
	"github.com/atrelay/relay/engine/wsframe"
	"github.com/atrelay/relay/pool"
)

// replayPassEvents ends a log replay pass after this many relay events; the
// next pass re-seeks. It bounds how long one slow subscriber keeps a store
// iterator (and the files it pins) open.
const replayPassEvents = 4096

// errPassDone ends a replay pass early.
var errPassDone = errors.New("jetstream: replay pass budget spent")

// subscriber is one /subscribe connection. Its writer side runs in the
// HTTP handler goroutine and writes only through out; a reader goroutine
// (readLoop) reads the client's messages.
type subscriber struct {
	// Static after newSubscriber.
	s         *Server
	out       *fanout.Conn[cause]
	remote    string
	userAgent string
	compress  bool
	op        byte          // wsframe.OpText for JSON, wsframe.OpBinary for zstd
	hello     chan struct{} // closed by the reader at the first valid options_update

	// filter is the current choice of events, swapped by options_update
	// (reader) and read by the pump and the replay.
	filter atomic.Pointer[filter]

	// Guarded by s.mu: set before the subscriber joins s.live.
	after   uint64 // the pump skips relay seqs ≤ after
	minTime int64  // and stamps < minTime
	dead    bool   // the queue overflowed; the pump drops it

	// qmu guards the live queue: a ring of shared messages, each holding
	// one reference, grown by doubling up to Config.QueueEvents.
	qmu     sync.Mutex
	q       []queued
	qhead   int
	qlen    int
	qbytes  int
	qclosed bool
	// flying: the writer took a batch and has not released it yet; its
	// first message's mark is still oldest. Guarded by qmu.
	flying bool
	// oldest is the mark of the oldest message the subscriber pins,
	// queued or being written (noMark: none). Guarded by qmu.
	oldest int64

	// Owned by the writer goroutine.
	conv     *converter // replay scratch, dropped when the replay ends
	rbuf     []byte     // replay JSON
	rzbuf    []byte     // replay zstd
	replayFn func(seq uint64, unixMilli int64, frame []byte) error
	rpos     uint64 // replay: the last relay seq processed
	rafter   uint64 // replay: events with seq ≤ rafter are not sent
	rmin     int64  // replay: events stamped < rmin are not sent
	rleft    int    // replay: events left in this pass
	werr     error  // the write error that ended a replay pass
}

// queued is one message in a subscriber's queue and its mark: how many
// bytes of messages the pump had made once it made this one (Server.made),
// so that the bytes made since a subscriber's oldest message tell how
// much of the stream it holds back (Config.BacklogBytes); a message larger
// than the backlog alone holds nothing back.
type queued struct {
	f    *pool.Frame
	mark int64
}

// noMark is oldest for a subscriber that pins no message.
const noMark = math.MaxInt64

func newSubscriber(s *Server, conn net.Conn, compress bool) *subscriber {
	sub := &subscriber{
		s:        s,
		out:      fanout.NewConn[cause](&s.ep, conn, s.ctx),
		remote:   conn.RemoteAddr().String(),
		compress: compress,
		op:       wsframe.OpText,
		hello:    make(chan struct{}),
		oldest:   noMark,
	}
	if compress {
		sub.op = wsframe.OpBinary
	}
	sub.replayFn = sub.replayEvent
	return sub
}

// stop ends the subscriber for reason why (the first reason wins) and
// aborts a write in progress. It never blocks on the socket.
func (sub *subscriber) stop(why cause) { sub.out.Stop(why, "") }

// failed returns the disconnect cause after a write error: the stop
// reason when stop aborted the write, else a write error.
func (sub *subscriber) failed() cause { return sub.out.Failed(causeWriteError) }

// serve runs the subscriber to its end. It runs in the HTTP handler
// goroutine.
func (sub *subscriber) serve(kind cursorKind, cur int64, requireHello bool) {
	s := sub.s
	defer s.wg.Done()
	why := sub.run(kind, cur, requireHello)
	sub.finish(why)
	s.m.disconnects[why].Inc() // before it leaves the set (as the firehose does)
	s.removeLive(sub)
	sub.closeQueue()
	s.cfg.Logger.Debug("jetstream subscriber disconnected", "remote", sub.remote, "reason", why.String())
}

// run waits for the hello if asked, places the subscriber in the stream
// (replaying from the log first if its cursor calls for it) and then
// writes live messages until something ends the connection.
func (sub *subscriber) run(kind cursorKind, cur int64, requireHello bool) cause {
	if requireHello {
		t := time.NewTimer(sub.s.cfg.HelloTimeout)
		select {
		case <-sub.hello:
			t.Stop()
		case <-sub.out.Context().Done():
			t.Stop()
			return sub.failed()
		case <-t.C:
			return causeHelloTimeout
		}
	}
	if why := sub.start(kind, cur); why != causeNone {
		return why
	}
	return sub.live()
}

// start puts the subscriber in the live set at once when nothing the pump
// has already sent is wanted (no cursor, a future cursor, or a cursor at
// or after the pump's position); otherwise it replays from the log first.
//
// A time cursor t wants every event stamped ≥ t (inclusive, as Jetstream
// seeks its store to t); a seq cursor a every event with relay seq > a.
// Both orders agree, since stamps never decrease with seq, so the pump's
// position (doneSeq, lastTime) says whether anything wanted was sent.
func (sub *subscriber) start(kind cursorKind, cur int64) cause {
	s := sub.s
	var after uint64
	var minTime int64
	switch kind {
	case cursorTime:
		if cur > s.cfg.Now().UnixMicro() {
			kind = cursorNone // Jetstream: a future cursor goes live
		} else {
			minTime = cur
		}
	case cursorSeq:
		after = uint64(cur)
	}
	s.mu.Lock()
	if kind == cursorNone || s.doneSeq <= after || s.lastTime < minTime {
		s.goLiveLocked(sub, s.doneSeq, minTime)
		s.mu.Unlock()
		return causeNone
	}
	seen := s.doneSeq
	s.mu.Unlock()
	return sub.replay(kind, after, minTime, seen)
}

// replay sends the wanted events of the log from the cursor, in passes,
// and joins the live set once a pass that began after the pump reached
// seq seen ended with nothing left at or below the pump's position: every
// event up to there that the log still holds was sent.
func (sub *subscriber) replay(kind cursorKind, after uint64, minTime int64, seen uint64) cause {
	s := sub.s
	select {
	case s.replaySlots <- struct{}{}:
	case <-sub.out.Context().Done():
		return sub.failed()
	}
	defer func() { <-s.replaySlots }()
	s.m.replays.Inc()
	var start uint64
	var err error
	if kind == cursorTime {
		var exact bool
		start, exact, err = s.timeStart(minTime)
		if !exact {
			minTime = 0
		}
	} else {
		start, err = s.seqStart(after)
	}
	if err != nil {
		if sub.out.Context().Err() != nil {
			return sub.failed()
		}
		s.cfg.Logger.Warn("jetstream replay: cannot place cursor", "remote", sub.remote, "err", err)
		return causeReplayError
	}
	sub.conv = &converter{}
	defer func() { sub.conv, sub.rbuf, sub.rzbuf = nil, nil, nil }()
	sub.rpos, sub.rafter, sub.rmin = start-1, after, minTime
	for {
		natural, why := sub.replayPass()
		if why != causeNone {
			return why
		}
		if !natural {
			continue
		}
		covered := max(sub.rpos, seen)
		s.mu.Lock()
		if covered >= s.doneSeq {
			s.goLiveLocked(sub, max(covered, after), minTime)
			s.mu.Unlock()
			return causeNone
		}
		seen = s.doneSeq
		s.mu.Unlock()
	}
}

// replayPass runs one ReplayTimed pass from sub.rpos; natural is true when
// it reached the end of the log rather than its event budget.
func (sub *subscriber) replayPass() (natural bool, why cause) {
	s := sub.s
	sub.out.BeginReplay()
	sub.werr = nil
	sub.rleft = s.cfg.passEvents
	err := s.src.ReplayTimed(sub.out.Context(), sub.rpos, sub.replayFn)
	ferr := sub.out.EndReplay()
	switch {
	case sub.werr != nil:
		return false, sub.failed()
	case errors.Is(err, errPassDone):
		if ferr != nil {
			return false, sub.failed()
		}
		return false, causeNone
	case err != nil:
		if sub.out.Context().Err() != nil {
			return false, sub.failed()
		}
		s.cfg.Logger.Warn("jetstream replay failed", "remote", sub.remote, "after", sub.rpos, "err", err)
		return false, causeReplayError
	case ferr != nil:
		return false, sub.failed()
	}
	return true, causeNone
}

// replayEvent is the replay's ReplayTimed callback (stored in sub.replayFn
// so passing it allocates nothing): it stamps the event, then encodes and
// writes each wanted Jetstream event for this subscriber alone.
func (sub *subscriber) replayEvent(seq uint64, unixMilli int64, frame []byte) error {
	if seq <= sub.rpos {
		return nil
	}
	s := sub.s
	c := sub.conv
	if err := c.load(seq, unixMilli, frame); err != nil {
		s.m.badFrames.Inc()
	}
	if err := sub.out.Pong(); err != nil {
		sub.werr = err
		return err
	}
	f := sub.filter.Load()
	cands := c.cands
	if !f.wantsDID(c.did()) {
		cands = nil
	}
	for i := range cands {
		cd := &cands[i]
		if cd.seq <= sub.rafter || cd.timeUS < sub.rmin || !f.wantsCollection(cd.kind, cd.collection) {
			continue
		}
		var why skip
		sub.rbuf, why = c.appendJSON(sub.rbuf[:0], i)
		if why != skipNone {
			s.m.skipped[why].Inc()
			continue
		}
		out := sub.rbuf
		if sub.compress {
			sub.rzbuf = s.zenc.EncodeAll(sub.rbuf, sub.rzbuf[:0])
			out = sub.rzbuf
		}
		if f.maxMessageBytes > 0 && len(out) > f.maxMessageBytes {
			continue
		}
		n, err := sub.out.Buffer(sub.op, out)
		if err != nil {
			sub.werr = err
			return err
		}
		s.m.sentReplay.Inc()
		s.m.bytesSent.Add(n)
	}
	sub.rpos = seq
	if sub.rleft--; sub.rleft <= 0 {
		return errPassDone
	}
	return nil
}

// enqueue queues a shared message with its mark for the writer, taking a
// reference; made is the bytes of messages made so far. It returns false when the queue is full (QueueEvents), the
// message does not fit a non-empty queue (QueueBytes), or the subscriber
// would hold back more than BacklogBytes of the stream. Called by the pump
// under s.mu; never blocks on the socket.
func (sub *subscriber) enqueue(f *pool.Frame, mark, made int64) bool {
	n := f.Len()
	cfg := &sub.s.cfg
	sub.qmu.Lock()
	if sub.qclosed {
		sub.qmu.Unlock()
		return true
	}
	if sub.qlen == cfg.QueueEvents || (sub.qlen > 0 && sub.qbytes+n > cfg.QueueBytes) ||
		sub.behindLocked(made) > int64(cfg.BacklogBytes) {
		sub.qmu.Unlock()
		return false
	}
	if sub.qlen == len(sub.q) {
		sub.growLocked(min(max(2*len(sub.q), 64), cfg.QueueEvents))
	}
	sub.q[(sub.qhead+sub.qlen)%len(sub.q)] = queued{f.Retain(), mark}
	if sub.qlen == 0 && !sub.flying {
		sub.oldest = mark
	}
	sub.qlen++
	sub.qbytes += n
	sub.qmu.Unlock()
	sub.out.Wake()
	return true
}

// behindLocked returns the bytes of messages made since the oldest one sub
// pins (0 when it pins none), given made so far. REQUIRES: sub.qmu.
func (sub *subscriber) behindLocked(made int64) int64 {
	if sub.oldest == noMark {
		return 0
	}
	return made - sub.oldest
}

// behind is behindLocked for the pump's sweep and the gauge.
func (sub *subscriber) behind(made int64) int64 {
	sub.qmu.Lock()
	defer sub.qmu.Unlock()
	return sub.behindLocked(made)
}

// growLocked moves the ring into a slice of n slots. REQUIRES: sub.qmu.
func (sub *subscriber) growLocked(n int) {
	q := make([]queued, n)
	for i := 0; i < sub.qlen; i++ {
		q[i] = sub.q[(sub.qhead+i)%len(sub.q)]
	}
	sub.q, sub.qhead = q, 0
}

// take moves up to BatchMessages queued messages into sub.out.Batch();
// the references move with them (sub.out releases them once written, and
// the writer then calls landed). The batch's first message stays the
// oldest sub pins until then.
func (sub *subscriber) take() int {
	batch := sub.out.Batch()
	sub.qmu.Lock()
	defer sub.qmu.Unlock()
	n := min(sub.qlen, len(batch))
	for i := 0; i < n; i++ {
		j := (sub.qhead + i) % len(sub.q)
		batch[i] = sub.q[j].f
		sub.q[j] = queued{}
		sub.qbytes -= batch[i].Len()
	}
	if n > 0 {
		sub.qhead = (sub.qhead + n) % len(sub.q)
		sub.qlen -= n
		sub.flying = true
	}
	return n
}

// landed records that the batch take handed out is written and released:
// the oldest message sub pins is now its queue's head, if any.
func (sub *subscriber) landed() {
	sub.qmu.Lock()
	defer sub.qmu.Unlock()
	sub.flying = false
	sub.oldest = noMark
	if sub.qlen > 0 {
		sub.oldest = sub.q[sub.qhead].mark
	}
}

// closeQueue releases every queued message and refuses later ones. Called
// by the writer once the subscriber has left the live set.
func (sub *subscriber) closeQueue() {
	sub.qmu.Lock()
	sub.qclosed = true
	for i := 0; i < sub.qlen; i++ {
		j := (sub.qhead + i) % len(sub.q)
		sub.q[j].f.Release()
		sub.q[j] = queued{}
	}
	sub.q, sub.qhead, sub.qlen, sub.qbytes = nil, 0, 0, 0
	sub.oldest = noMark
	sub.qmu.Unlock()
}

// live writes queued messages until the connection ends, pinging when idle.
func (sub *subscriber) live() cause {
	m := sub.s.m
	for {
		if err := sub.out.Pong(); err != nil {
			return sub.failed()
		}
		if n := sub.take(); n > 0 {
			total, err := sub.out.WriteBatch(sub.op, n)
			sub.landed()
			if err != nil {
				return sub.failed()
			}
			m.sentLive.Add(n)
			m.bytesSent.Add(total)
			continue
		}
		pinged, err := sub.out.Wait()
		if err != nil {
			return sub.failed()
		}
		if pinged {
			m.pings.Inc()
		}
	}
}

// finish sends the close frame the cause calls for, then closes the
// socket.
func (sub *subscriber) finish(why cause) {
	code := uint16(closeNormal)
	switch why {
	case causeTooSlow, causeBadOptions, causeHelloTimeout:
		code = closePolicy
	case causeMessageSize:
		code = closeTooBig
	case causeServerClosed:
		code = closeGoingAway
	case causeReplayError:
		code = closeInternal
	}
	if why != causeWriteError && why != causeProtocol {
		_, text, _ := sub.out.Reason()
		if text == "" && why != causeClientClosed {
			text = why.String()
		}
		sub.out.Goodbye(nil, code, text)
	}
	sub.out.Close(why)
}
