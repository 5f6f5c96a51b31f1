package upstream

import (
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/valyala/bytebufferpool"
)

// conn is one upgraded connection. Owned by whichever goroutine owns its
// host (Host.state says which); only that goroutine reads, writes or closes.
type conn struct {
	id    uint64   // static: epoll key, unique for the loop's lifetime
	nb    *nbConn  // static: the socket
	rw    net.Conn // static: nb, or a *tls.Conn over nb
	isTLS bool     // static
	fr    frameReader

	// starved is set when a turn ended starved: a grant may come, and
	// whatever of it the next turns leave unused is given back.
	starved bool

	pending   *bytebufferpool.ByteBuffer // bytes read but not parsed when a turn stopped; in Loop.pending
	pendOff   int                        // parsed prefix of pending
	delivered bool                       // a message other than an error frame was delivered

	// prevFailures is the host's failure count when this connection was
	// made: a connection ended for misbehaving (penalized) counts as one
	// more failed dial, however many messages it delivered before.
	prevFailures int

	// The message clock (Config.MessageTimeout): when the unit in flight
	// (fr.done tells units apart) was first seen after a read; 0 when
	// nothing is in flight. Mirrored in Host.msgStart for the clock.
	msgStart int64 // unix nanos
	msgMark  uint64

	// Control replies. A pong is owed for the newest ping only (pings
	// coalesce) and is written, without blocking, at the end of the turn.
	pingTAT int64 // ping rate limiter: GCRA theoretical arrival time, unix nanos
	pongDue bool
	pongN   int
	pong    [ws.MaxControlFramePayloadSize]byte
}

// penalized reports whether a connection ending for r counts as a failed
// dial even if it delivered messages: the peer misbehaved, and a host that
// sends one good message per connection must still back off.
func penalized(r Reason) bool {
	switch r {
	case ReasonProtocol, ReasonOversize, ReasonMessageTimeout, ReasonPingFlood, ReasonErrorFrame:
		return true
	}
	return false
}

// turnOutcome is how a reader's turn on a host ended.
type turnOutcome uint8

const (
	outNone    turnOutcome = iota // process: nothing stopped it
	outBlocked                    // socket (and TLS buffer) empty: re-arm
	outPaused                     // Sink returned false: park until Resume
	outStarved                    // the buffer budget refused: wait for a grant
	outBudget                     // TurnBytes used up: requeue behind other hosts
	outFailed                     // drop the connection
)

// reader is one reader goroutine's state. Owned by that goroutine.
type reader struct {
	l       *Loop
	scratch []byte                                      // Config.ReadBufferBytes
	wbuf    [2 + 4 + ws.MaxControlFramePayloadSize]byte // one masked control frame
}

func (l *Loop) readLoop(r *reader) {
	defer l.wg.Done()
	for {
		h, ok := l.runQ.pop()
		if !ok {
			return
		}
		r.serve(h)
	}
}

// serve runs turns on a host this reader owns until ownership is given up:
// armed in epoll, parked, requeued, or dropped.
func (r *reader) serve(h *Host) {
	l := r.l
	for {
		if l.closed.Load() {
			return // Close sweeps the connection
		}
		h.mu.Lock()
		c, req := h.conn, h.req
		h.req &^= reqPing | reqResume | reqWake
		h.mu.Unlock()
		if c == nil {
			return
		}
		switch {
		case req&reqRemove != 0, req&reqReconnect != 0:
			l.drop(h, c, numReasons, nil)
			return
		case req&reqTimeout != 0:
			l.drop(h, c, ReasonTimeout, ErrPongTimeout)
			return
		case req&reqMsgTimeout != 0:
			r.sendClose(c, ReasonMessageTimeout, ErrMessageTimeout)
			l.drop(h, c, ReasonMessageTimeout, ErrMessageTimeout)
			return
		case req&reqPing != 0:
			if err := r.writeControl(c, ws.OpPing, nil); err != nil {
				l.drop(h, c, writeReason(err), err)
				return
			}
		}
		out, reason, err := r.turn(h, c)
		if out != outFailed {
			if reason, err = r.flushControl(c); err != nil {
				out = outFailed
			}
		}
		if c.starved && out != outStarved {
			// Woken with a grant: give back what the turn left.
			c.starved = false
			l.mem.settle(h)
		}
		if out == outFailed {
			switch reason {
			case ReasonProtocol, ReasonOversize, ReasonMessageTimeout, ReasonPingFlood:
				r.sendClose(c, reason, err)
			}
			l.drop(h, c, reason, err)
			return
		}
		if out == outPaused && c.msgStart != 0 {
			// Time parked is ours, not the peer's: the unit in flight
			// gets a fresh clock at the first read after Resume. Time
			// starved is not: a partial message holds shared budget, and
			// its clock is what frees it (memBudget).
			c.msgStart = 0
			h.msgStart.Store(0)
		}
		h.mu.Lock()
		if c.delivered {
			h.failures = 0
		}
		if h.req&(reqRemove|reqReconnect|reqTimeout|reqMsgTimeout|reqPing) != 0 {
			h.mu.Unlock()
			continue
		}
		switch out {
		case outBlocked:
			h.state = stateArmed
			err = l.ep.arm(c.nb.fd, c.id)
		case outPaused:
			if h.req&reqResume != 0 {
				h.req &^= reqResume
				h.mu.Unlock()
				continue
			}
			h.state = stateParked
		case outStarved:
			c.starved = true
			if h.req&reqWake != 0 {
				h.req &^= reqWake
				h.mu.Unlock()
				continue
			}
			h.state = stateStarved
		case outBudget:
			l.runQ.push(h)
		}
		h.mu.Unlock()
		if err != nil {
			// Only the owner arms, so a failed MOD means the socket is gone.
			h.mu.Lock()
			h.state = stateReading
			h.mu.Unlock()
			l.drop(h, c, ReasonClosedByPeer, err)
		}
		return
	}
}

// turn reads and dispatches until the socket would block, the Sink pauses,
// the buffer budget refuses, TurnBytes runs out or the connection fails.
func (r *reader) turn(h *Host, c *conn) (turnOutcome, Reason, error) {
	if c.pending != nil {
		n, stop, reason, err := r.process(h, c, c.pending.B[c.pendOff:])
		c.pendOff += n
		if c.pendOff == len(c.pending.B) {
			r.l.freePending(c)
		}
		if err != nil {
			return outFailed, reason, err
		}
		if stop != outNone {
			return r.stopped(h, c, stop, time.Now().UnixNano())
		}
		// Starts the clock of a message the pending bytes began, in case
		// the socket has nothing more for now.
		if r.msgTimedOut(h, c, time.Now().UnixNano()) {
			return outFailed, ReasonMessageTimeout, ErrMessageTimeout
		}
	}
	for budget := r.l.cfg.TurnBytes; budget > 0; {
		dst, starved := c.fr.directDst()
		if starved {
			return r.stopped(h, c, outStarved, time.Now().UnixNano())
		}
		if dst != nil {
			n, err := c.rw.Read(dst)
			if n > 0 {
				now := time.Now().UnixNano()
				h.lastActivity.Store(now)
				budget -= n
				if c.fr.advance(n) == kindMessage {
					keep, derr := r.deliver(h, c)
					if derr != nil {
						return outFailed, ReasonErrorFrame, derr
					}
					if !keep {
						return outPaused, 0, nil
					}
				}
				if r.msgTimedOut(h, c, now) {
					return outFailed, ReasonMessageTimeout, ErrMessageTimeout
				}
			}
			if err != nil {
				return readFailure(c, err)
			}
			continue
		}
		buf := r.readBuf()
		n, err := c.rw.Read(buf)
		if n > 0 {
			now := time.Now().UnixNano()
			h.lastActivity.Store(now)
			budget -= n
			used, stop, reason, perr := r.process(h, c, buf[:n])
			if perr != nil {
				return outFailed, reason, perr
			}
			if stop != outNone {
				if used < n {
					r.l.keepPending(c, buf[used:n])
				}
				return r.stopped(h, c, stop, now)
			}
			if r.msgTimedOut(h, c, now) {
				return outFailed, ReasonMessageTimeout, ErrMessageTimeout
			}
		}
		if err != nil {
			return readFailure(c, err)
		}
	}
	return outBudget, 0, nil
}

// stopped ends a turn the Sink paused or the buffer budget starved. A
// starved host's message clock starts (or goes on) now: it keeps running
// while the host waits (see memBudget).
func (r *reader) stopped(h *Host, c *conn, stop turnOutcome, now int64) (turnOutcome, Reason, error) {
	if stop == outStarved && r.msgTimedOut(h, c, now) {
		return outFailed, ReasonMessageTimeout, ErrMessageTimeout
	}
	return stop, 0, nil
}

// readFailure classifies a read error. errWouldBlock is the normal end of
// a turn; for TLS it also proves crypto/tls holds no complete record, since
// tls.Conn.Read only touches the socket once its plaintext and raw record
// buffers cannot produce a byte, and recordConn only once it handed out
// the header bytes it holds.
func readFailure(c *conn, err error) (turnOutcome, Reason, error) {
	var errno syscall.Errno
	switch {
	case err == errWouldBlock:
		return outBlocked, 0, nil
	case errors.Is(err, ErrWriteStalled):
		// crypto/tls answering the peer (a key update) found the socket
		// full of what we already owe.
		return outFailed, ReasonTimeout, err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &errno):
		return outFailed, ReasonClosedByPeer, err
	case c.isTLS:
		return outFailed, ReasonTLS, err
	default:
		return outFailed, ReasonClosedByPeer, err
	}
}

// process parses p, dispatching every completed frame. It stops early,
// with used < len(p) possibly, when the Sink pauses (stop outPaused) or
// the buffer budget refuses (outStarved), or on a failure.
func (r *reader) process(h *Host, c *conn, p []byte) (used int, stop turnOutcome, reason Reason, err error) {
	for used < len(p) {
		n, k, ferr := c.fr.feed(p[used:])
		used += n
		if ferr != nil {
			if ferr == ErrOversize {
				return used, outNone, ReasonOversize, ferr
			}
			return used, outNone, ReasonProtocol, ferr
		}
		switch k {
		case kindStarved:
			return used, outStarved, 0, nil
		case kindMessage:
			keep, derr := r.deliver(h, c)
			if derr != nil {
				return used, outNone, ReasonErrorFrame, derr
			}
			if !keep {
				return used, outPaused, 0, nil
			}
		case kindPing:
			if !c.pingAllowed(r.l.cfg.MaxPingsPerSecond) {
				return used, outNone, ReasonPingFlood, ErrPingFlood
			}
			// Answered by flushControl at the end of the turn: a flood of
			// pings costs one pong write per turn, never a blocked reader.
			c.pongN = copy(c.pong[:], c.fr.control())
			c.pongDue = true
		case kindClose:
			code := ws.StatusNormalClosure
			if ctl := c.fr.control(); len(ctl) >= 2 {
				code = ws.StatusCode(binary.BigEndian.Uint16(ctl))
			}
			r.writeClose(c, code)
			return used, outNone, ReasonClosedByPeer, ErrPeerClosed
		}
	}
	return used, outNone, 0, nil
}

// deliver hands the completed message to the Sink and reports whether to
// keep reading. An error frame is delivered too, and then ends the stream
// (err ErrErrorFrame): the spec has the server close after it, and a host
// answering every connection with one must back off, not loop. It does not
// count as a delivery for the failure count.
func (r *reader) deliver(h *Host, c *conn) (keep bool, err error) {
	m := c.fr.takeMessage()
	n := len(m.B)
	errFrame := isErrorFrame(m.B) // before the Sink, which may release m
	h.frames.Add(1)
	h.bytes.Add(uint64(n))
	h.outstanding.Add(int64(n))
	r.l.outstanding.Add(int64(n))
	r.l.m.frames.Inc()
	r.l.m.bytes.Add(n)
	if !errFrame {
		c.delivered = true
	}
	keep = r.l.cfg.Sink(h, Frame{b: m, h: h})
	if errFrame {
		return keep, ErrErrorFrame
	}
	return keep, nil
}

// pingAllowed is the per-connection ping rate limit: a GCRA bucket of
// rate pings per second with a burst of 2·rate.
func (c *conn) pingAllowed(rate int) bool {
	const burst = 2 * int64(time.Second)
	now := time.Now().UnixNano()
	tat := max(c.pingTAT, now) + int64(time.Second)/int64(rate)
	if tat-now > burst {
		return false
	}
	c.pingTAT = tat
	return true
}

// msgTimedOut runs after each read that did not end the turn: it starts the
// message clock when a new unit is in flight, stops it between units, and
// reports whether the unit in flight is older than Config.MessageTimeout.
// Per read, not per frame, so a busy stream pays nothing per message.
func (r *reader) msgTimedOut(h *Host, c *conn, now int64) bool {
	if !c.fr.partial() {
		if c.msgStart != 0 {
			c.msgStart = 0
			h.msgStart.Store(0)
		}
		return false
	}
	if c.msgStart == 0 || c.msgMark != c.fr.done {
		c.msgStart, c.msgMark = now, c.fr.done
		h.msgStart.Store(now)
		return false
	}
	return now-c.msgStart > r.l.cfg.MessageTimeout.Nanoseconds()
}

// flushControl sends, without blocking, what the connection owes the peer:
// first the rest of an earlier control frame the socket could not take,
// then the pong for the newest ping. A peer that leaves them unread for
// WriteTimeout (it floods us and never reads) is dropped.
func (r *reader) flushControl(c *conn) (Reason, error) {
	if c.nb.owes() {
		if err := c.nb.flush(); err != nil {
			return writeReason(err), err
		}
		if c.nb.owes() {
			if time.Now().UnixNano()-c.nb.owedSince > r.l.cfg.WriteTimeout.Nanoseconds() {
				return ReasonTimeout, ErrWriteStalled
			}
			return 0, nil // the pong, if any, waits: it would only queue
		}
	}
	if c.pongDue {
		c.pongDue = false
		if err := r.writeControl(c, ws.OpPong, c.pong[:c.pongN]); err != nil {
			return writeReason(err), err
		}
	}
	return 0, nil
}

// writeReason classifies a failed control write.
func writeReason(err error) Reason {
	if errors.Is(err, ErrWriteStalled) {
		return ReasonTimeout
	}
	return ReasonClosedByPeer
}

// writeControl sends one masked control frame (RFC 6455 §5.3: a client
// masks everything it sends) without blocking. While earlier bytes are
// still owed the frame is skipped: pings and closes are best effort, and
// flushControl holds a pong back until the socket drained.
func (r *reader) writeControl(c *conn, op ws.OpCode, payload []byte) error {
	if c.nb.owes() {
		return nil
	}
	b := r.wbuf[:0]
	b = append(b, 0x80|byte(op), 0x80|byte(len(payload)))
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	b = append(b, mask[:]...)
	b = append(b, payload...)
	ws.Cipher(b[6:], mask, 0)
	_, err := c.rw.Write(b)
	return err
}

// writeClose answers or starts the close handshake, best effort: the
// connection is dropped right after either way.
func (r *reader) writeClose(c *conn, code ws.StatusCode) {
	if code == 0 || code == ws.StatusNoStatusRcvd {
		// 1005 means "no code was sent" and must not appear on the wire.
		_ = r.writeControl(c, ws.OpClose, nil)
		return
	}
	var body [2]byte
	binary.BigEndian.PutUint16(body[:], uint16(code))
	_ = r.writeControl(c, ws.OpClose, body[:])
}

// sendClose tells the peer why we are dropping it.
func (r *reader) sendClose(c *conn, reason Reason, err error) {
	code := ws.StatusProtocolError
	switch {
	case reason == ReasonOversize:
		code = ws.StatusMessageTooBig
	case reason == ReasonMessageTimeout, reason == ReasonPingFlood:
		code = ws.StatusPolicyViolation
	case err == ErrTextFrame:
		code = ws.StatusUnsupportedData
	}
	r.writeClose(c, code)
}

// drop closes c, counts reason (numReasons: an intentional drop, not
// counted) and decides what the host does next. The caller owns h's
// connection (it is not armed, or it is armed but claimed via stateReading).
func (l *Loop) drop(h *Host, c *conn, reason Reason, err error) {
	l.closeConn(c)
	l.connected.Add(-1)
	l.count(h, reason, err)
	h.mu.Lock()
	h.conn = nil
	req := h.req
	h.req = 0
	switch {
	case req&reqRemove != 0 || l.closed.Load():
		h.state = stateClosed
		h.mu.Unlock()
		l.unregister(h)
	case req&reqReconnect != 0 && !penalized(reason):
		h.state = stateDialQueued
		h.mu.Unlock()
		l.dialQ.push(h)
	default:
		// A Reconnect asked for while the peer misbehaved (the engine
		// answering an error frame) keeps its cursor but waits out the
		// backoff like any failed dial.
		switch {
		case penalized(reason):
			h.failures = max(h.failures, c.prevFailures) + 1
		case c.delivered:
			h.failures = 1
		default:
			h.failures++
		}
		l.scheduleLocked(h, reason)
		h.mu.Unlock()
	}
}

// closeConn unregisters and closes c and returns its buffers.
func (l *Loop) closeConn(c *conn) {
	l.mu.Lock()
	delete(l.conns, c.id)
	l.mu.Unlock()
	_ = l.ep.del(c.nb.fd)
	_ = c.rw.Close()
	c.fr.reset()
	l.freePending(c)
	l.mem.settle(c.fr.host)
}

// count records a failure reason on the host and the loop, and tells the
// engine. numReasons means "not a failure" and is not counted.
func (l *Loop) count(h *Host, reason Reason, err error) {
	if reason >= numReasons {
		return
	}
	h.errs[reason].Add(1)
	l.m.errs[reason].Inc()
	if l.cfg.OnDisconnect != nil {
		if err != nil {
			err = remoteError{err}
		}
		l.cfg.OnDisconnect(h, reason, err)
	}
}
