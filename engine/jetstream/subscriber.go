package jetstream

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atrelay/relay/engine/wsframe"
	"github.com/atrelay/relay/pool"
)

// finalWriteTimeout bounds the courtesy writes (close frame) made while
// disconnecting, so Close never waits long on a dead peer.
const finalWriteTimeout = time.Second

// replayPassEvents ends a log replay pass after this many relay events; the
// next pass re-seeks. It bounds how long one slow subscriber keeps a store
// iterator (and the files it pins) open.
const replayPassEvents = 4096

// Sentinels that end a replay pass early.
var (
	errPassDone = errors.New("jetstream: replay pass budget spent")
	errStopped  = errors.New("jetstream: subscriber stopped")
)

// subscriber is one /subscribe connection. Its writer side runs in the
// HTTP handler goroutine and is the only writer to conn; a reader goroutine
// (readLoop) reads the client's messages.
type subscriber struct {
	// Static after newSubscriber.
	s         *Server
	conn      net.Conn
	remote    string
	userAgent string
	compress  bool
	op        byte // wsframe.OpText for JSON, wsframe.OpBinary for zstd
	ctx       context.Context
	cancel    context.CancelFunc
	wake      chan struct{} // one slot: enqueue and the reader send without blocking
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
	q       []*pool.Frame
	qhead   int
	qlen    int
	qbytes  int
	qclosed bool

	// Owned by the writer goroutine.
	batch    []*pool.Frame
	hdrs     []byte   // BatchMessages WebSocket headers, wsframe.HeaderMax apart
	iovBuf   [][]byte // backing array of iov
	iov      net.Buffers
	ctlHdr   [wsframe.HeaderMax]byte
	wrote    bool          // something was written since the last ping tick
	bw       *bufio.Writer // replay buffer, held only during a replay pass
	conv     *converter    // replay scratch, dropped when the replay ends
	rbuf     []byte        // replay JSON
	rzbuf    []byte        // replay zstd
	replayFn func(seq uint64, unixMilli int64, frame []byte) error
	rpos     uint64 // replay: the last relay seq processed
	rafter   uint64 // replay: events with seq ≤ rafter are not sent
	rmin     int64  // replay: events stamped < rmin are not sent
	rleft    int    // replay: events left in this pass
	werr     error  // the write error that ended a replay pass
	pong     [125]byte

	// pongWanted is set by the reader when a ping arrived; the writer
	// answers at the next message boundary.
	pongWanted atomic.Bool

	// dmu guards the fields below. stop takes it to abort a blocked write
	// without waiting for the write to finish.
	dmu         sync.Mutex
	stopped     bool
	writing     bool
	why         cause
	closeText   string
	pingPayload [125]byte
	pingLen     int
}

func newSubscriber(s *Server, conn net.Conn, compress bool) *subscriber {
	n := s.cfg.BatchMessages
	sub := &subscriber{
		s:        s,
		conn:     conn,
		remote:   conn.RemoteAddr().String(),
		compress: compress,
		op:       wsframe.OpText,
		wake:     make(chan struct{}, 1),
		hello:    make(chan struct{}),
		batch:    make([]*pool.Frame, n),
		hdrs:     make([]byte, n*wsframe.HeaderMax),
		iovBuf:   make([][]byte, 0, 2*n),
	}
	if compress {
		sub.op = wsframe.OpBinary
	}
	sub.ctx, sub.cancel = context.WithCancel(s.ctx)
	sub.replayFn = sub.replayEvent
	return sub
}

// stop ends the subscriber for reason why (the first reason wins) and
// aborts a write in progress. It never blocks on the socket.
func (sub *subscriber) stop(why cause) {
	sub.stopWith(why, "")
}

// stopWith is stop with a close-frame reason text.
func (sub *subscriber) stopWith(why cause, text string) {
	sub.dmu.Lock()
	if !sub.stopped {
		sub.stopped = true
		sub.why = why
		sub.closeText = text
		if sub.writing {
			_ = sub.conn.SetWriteDeadline(time.Unix(1, 0))
		}
	}
	sub.dmu.Unlock()
	sub.cancel()
}

// failed returns the disconnect cause after a write error: the stop
// reason when stop aborted the write, else a write error.
func (sub *subscriber) failed() cause {
	sub.dmu.Lock()
	defer sub.dmu.Unlock()
	if sub.stopped {
		return sub.why
	}
	return causeWriteError
}

// beginWrite arms the write deadline; after stop it refuses unless final.
func (sub *subscriber) beginWrite(final bool) error {
	sub.dmu.Lock()
	defer sub.dmu.Unlock()
	if sub.stopped && !final {
		return errStopped
	}
	sub.writing = true
	d := sub.s.cfg.WriteTimeout
	if final {
		d = min(d, finalWriteTimeout)
	}
	return sub.conn.SetWriteDeadline(time.Now().Add(d))
}

func (sub *subscriber) endWrite() {
	sub.dmu.Lock()
	sub.writing = false
	sub.dmu.Unlock()
}

// Write writes p to the socket under the write deadline; it is the
// io.Writer beneath the replay buffer.
func (sub *subscriber) Write(p []byte) (int, error) {
	if err := sub.beginWrite(false); err != nil {
		return 0, err
	}
	n, err := sub.conn.Write(p)
	sub.endWrite()
	return n, err
}

// writeIOV writes sub.iov with one writev under the write deadline.
func (sub *subscriber) writeIOV(final bool) error {
	if err := sub.beginWrite(final); err != nil {
		return err
	}
	_, err := sub.iov.WriteTo(sub.conn)
	sub.endWrite()
	return err
}

// writeFrame writes one whole WebSocket frame, behind any replayed bytes
// still buffered.
func (sub *subscriber) writeFrame(op byte, payload []byte, final bool) error {
	k := wsframe.PutHeader(sub.ctlHdr[:], op, len(payload))
	if sub.bw != nil {
		_, _ = sub.bw.Write(sub.ctlHdr[:k])
		_, _ = sub.bw.Write(payload)
		return sub.bw.Flush()
	}
	sub.iov = append(sub.iovBuf[:0], sub.ctlHdr[:k], payload)
	return sub.writeIOV(final)
}

// sendPong answers the latest client ping.
func (sub *subscriber) sendPong() error {
	sub.pongWanted.Store(false)
	sub.dmu.Lock()
	n := copy(sub.pong[:], sub.pingPayload[:sub.pingLen])
	sub.dmu.Unlock()
	return sub.writeFrame(wsframe.OpPong, sub.pong[:n], false)
}

// serve runs the subscriber to its end. It runs in the HTTP handler
// goroutine.
func (sub *subscriber) serve(kind cursorKind, cur int64, requireHello bool) {
	s := sub.s
	defer s.wg.Done()
	why := sub.run(kind, cur, requireHello)
	sub.finish(why)
	s.removeLive(sub)
	sub.closeQueue()
	s.m.disconnects[why].Inc()
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
		case <-sub.ctx.Done():
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
	case <-sub.ctx.Done():
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
		if sub.ctx.Err() != nil {
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
	sub.bw = s.getReplayWriter(sub)
	sub.werr = nil
	sub.rleft = s.cfg.passEvents
	err := s.src.ReplayTimed(sub.ctx, sub.rpos, sub.replayFn)
	ferr := sub.bw.Flush()
	s.putReplayWriter(sub.bw)
	sub.bw = nil
	switch {
	case sub.werr != nil:
		return false, sub.failed()
	case errors.Is(err, errPassDone):
		if ferr != nil {
			return false, sub.failed()
		}
		return false, causeNone
	case err != nil:
		if sub.ctx.Err() != nil {
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
	if sub.pongWanted.Load() {
		if err := sub.sendPong(); err != nil {
			sub.werr = err
			return err
		}
	}
	f := sub.filter.Load()
	did := c.did()
	for i := range c.cands {
		cd := &c.cands[i]
		if cd.seq <= sub.rafter || cd.timeUS < sub.rmin || !f.wants(cd.kind, did, cd.collection) {
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
		k := wsframe.PutHeader(sub.ctlHdr[:], sub.op, len(out))
		_, _ = sub.bw.Write(sub.ctlHdr[:k])
		if _, err := sub.bw.Write(out); err != nil {
			sub.werr = err
			return err
		}
		sub.wrote = true
		s.m.sentReplay.Inc()
		s.m.bytesSent.Add(k + len(out))
	}
	sub.rpos = seq
	if sub.rleft--; sub.rleft <= 0 {
		return errPassDone
	}
	return nil
}

// enqueue queues a shared message for the writer, taking a reference;
// false when the queue is full (QueueEvents) or the message does not fit
// a non-empty queue (QueueBytes). Called by the pump under s.mu; never
// blocks on the socket.
func (sub *subscriber) enqueue(f *pool.Frame) bool {
	n := f.Len()
	cfg := &sub.s.cfg
	sub.qmu.Lock()
	if sub.qclosed {
		sub.qmu.Unlock()
		return true
	}
	if sub.qlen == cfg.QueueEvents || (sub.qlen > 0 && sub.qbytes+n > cfg.QueueBytes) {
		sub.qmu.Unlock()
		return false
	}
	if sub.qlen == len(sub.q) {
		sub.growLocked(min(max(2*len(sub.q), 64), cfg.QueueEvents))
	}
	sub.q[(sub.qhead+sub.qlen)%len(sub.q)] = f.Retain()
	sub.qlen++
	sub.qbytes += n
	sub.qmu.Unlock()
	select {
	case sub.wake <- struct{}{}:
	default:
	}
	return true
}

// growLocked moves the ring into a slice of n slots. REQUIRES: sub.qmu.
func (sub *subscriber) growLocked(n int) {
	q := make([]*pool.Frame, n)
	for i := 0; i < sub.qlen; i++ {
		q[i] = sub.q[(sub.qhead+i)%len(sub.q)]
	}
	sub.q, sub.qhead = q, 0
}

// take moves up to len(sub.batch) queued messages into sub.batch; the
// references move with them.
func (sub *subscriber) take() int {
	sub.qmu.Lock()
	defer sub.qmu.Unlock()
	n := min(sub.qlen, len(sub.batch))
	for i := 0; i < n; i++ {
		j := (sub.qhead + i) % len(sub.q)
		f := sub.q[j]
		sub.q[j] = nil
		sub.batch[i] = f
		sub.qbytes -= f.Len()
	}
	if n > 0 {
		sub.qhead = (sub.qhead + n) % len(sub.q)
		sub.qlen -= n
	}
	return n
}

// closeQueue releases every queued message and refuses later ones. Called
// by the writer once the subscriber has left the live set.
func (sub *subscriber) closeQueue() {
	sub.qmu.Lock()
	sub.qclosed = true
	for i := 0; i < sub.qlen; i++ {
		j := (sub.qhead + i) % len(sub.q)
		sub.q[j].Release()
		sub.q[j] = nil
	}
	sub.q, sub.qhead, sub.qlen, sub.qbytes = nil, 0, 0, 0
	sub.qmu.Unlock()
}

// live writes queued messages until the connection ends, pinging when idle.
func (sub *subscriber) live() cause {
	ticker := time.NewTicker(sub.s.cfg.PingInterval)
	defer ticker.Stop()
	for {
		if sub.pongWanted.Load() {
			if err := sub.sendPong(); err != nil {
				return sub.failed()
			}
		}
		if n := sub.take(); n > 0 {
			if err := sub.writeBatch(n); err != nil {
				return sub.failed()
			}
			continue
		}
		select {
		case <-sub.wake:
		case <-sub.ctx.Done():
			return sub.failed()
		case <-ticker.C:
			if sub.wrote {
				sub.wrote = false
				continue
			}
			if err := sub.writeFrame(wsframe.OpPing, nil, false); err != nil {
				return sub.failed()
			}
			sub.s.m.pings.Inc()
		}
	}
}

// writeBatch writes the n taken messages straight from their shared
// buffers with one writev, then releases them.
func (sub *subscriber) writeBatch(n int) error {
	sub.iov = sub.iovBuf[:0]
	total := 0
	for i := range n {
		b := sub.batch[i].Bytes()
		hdr := sub.hdrs[i*wsframe.HeaderMax : (i+1)*wsframe.HeaderMax]
		k := wsframe.PutHeader(hdr, sub.op, len(b))
		sub.iov = append(sub.iov, hdr[:k], b)
		total += k + len(b)
	}
	err := sub.writeIOV(false)
	for i := range n {
		sub.batch[i].Release()
		sub.batch[i] = nil
	}
	if err != nil {
		return err
	}
	sub.wrote = true
	sub.s.m.sentLive.Add(n)
	sub.s.m.bytesSent.Add(total)
	return nil
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
		sub.dmu.Lock()
		text := sub.closeText
		sub.dmu.Unlock()
		if text == "" && why != causeClientClosed {
			text = why.String()
		}
		var body [125]byte
		body[0], body[1] = byte(code>>8), byte(code)
		n := 2 + copy(body[2:], text)
		_ = sub.writeFrame(wsframe.OpClose, body[:n], true)
	}
	sub.stop(why)
	_ = sub.conn.Close()
}
