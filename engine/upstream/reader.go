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

	pending   *bytebufferpool.ByteBuffer // bytes read but not parsed when the Sink paused
	pendOff   int                        // parsed prefix of pending
	delivered bool                       // a message was delivered on this connection
}

// turnOutcome is how a reader's turn on a host ended.
type turnOutcome uint8

const (
	outBlocked turnOutcome = iota // socket (and TLS buffer) empty: re-arm
	outPaused                     // Sink returned false: park until Resume
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
		h.req &^= reqPing | reqResume
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
		case req&reqPing != 0:
			if err := r.writeControl(c, ws.OpPing, nil); err != nil {
				l.drop(h, c, ReasonClosedByPeer, err)
				return
			}
		}
		out, reason, err := r.turn(h, c)
		if out == outFailed {
			if reason == ReasonProtocol || reason == ReasonOversize {
				r.sendClose(c, reason, err)
			}
			l.drop(h, c, reason, err)
			return
		}
		h.mu.Lock()
		if c.delivered {
			h.failures = 0
		}
		if h.req&(reqRemove|reqReconnect|reqTimeout|reqPing) != 0 {
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
// the budget runs out or the connection fails.
func (r *reader) turn(h *Host, c *conn) (turnOutcome, Reason, error) {
	if c.pending != nil {
		n, paused, reason, err := r.process(h, c, c.pending.B[c.pendOff:])
		c.pendOff += n
		if c.pendOff == len(c.pending.B) {
			r.l.bufs.put(c.pending)
			c.pending, c.pendOff = nil, 0
		}
		if err != nil {
			return outFailed, reason, err
		}
		if paused {
			return outPaused, 0, nil
		}
	}
	for budget := r.l.cfg.TurnBytes; budget > 0; {
		if dst := c.fr.directDst(); dst != nil {
			n, err := c.rw.Read(dst)
			if n > 0 {
				h.lastActivity.Store(time.Now().UnixNano())
				budget -= n
				if c.fr.advance(n) == kindMessage && !r.deliver(h, c) {
					return outPaused, 0, nil
				}
			}
			if err != nil {
				return readFailure(c, err)
			}
			continue
		}
		n, err := c.rw.Read(r.scratch)
		if n > 0 {
			h.lastActivity.Store(time.Now().UnixNano())
			budget -= n
			used, paused, reason, perr := r.process(h, c, r.scratch[:n])
			if perr != nil {
				return outFailed, reason, perr
			}
			if paused {
				if used < n {
					c.pending = r.l.bufs.get(n - used)
					c.pending.B = append(c.pending.B, r.scratch[used:n]...)
				}
				return outPaused, 0, nil
			}
		}
		if err != nil {
			return readFailure(c, err)
		}
	}
	return outBudget, 0, nil
}

// readFailure classifies a read error. errWouldBlock is the normal end of
// a turn; for TLS it also proves crypto/tls holds no complete record, since
// tls.Conn.Read only touches the socket once its plaintext and raw record
// buffers cannot produce a byte.
func readFailure(c *conn, err error) (turnOutcome, Reason, error) {
	var errno syscall.Errno
	switch {
	case err == errWouldBlock:
		return outBlocked, 0, nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &errno):
		return outFailed, ReasonClosedByPeer, err
	case c.isTLS:
		return outFailed, ReasonTLS, err
	default:
		return outFailed, ReasonClosedByPeer, err
	}
}

// process parses p, dispatching every completed frame. It stops early when
// the Sink pauses (used < len(p) then) or on a failure.
func (r *reader) process(h *Host, c *conn, p []byte) (used int, paused bool, reason Reason, err error) {
	for used < len(p) {
		n, k, ferr := c.fr.feed(p[used:])
		used += n
		if ferr != nil {
			if ferr == ErrOversize {
				return used, false, ReasonOversize, ferr
			}
			return used, false, ReasonProtocol, ferr
		}
		switch k {
		case kindMessage:
			if !r.deliver(h, c) {
				return used, true, 0, nil
			}
		case kindPing:
			if werr := r.writeControl(c, ws.OpPong, c.fr.control()); werr != nil {
				return used, false, ReasonClosedByPeer, werr
			}
		case kindClose:
			code := ws.StatusNormalClosure
			if ctl := c.fr.control(); len(ctl) >= 2 {
				code = ws.StatusCode(binary.BigEndian.Uint16(ctl))
			}
			r.writeClose(c, code)
			return used, false, ReasonClosedByPeer, ErrPeerClosed
		}
	}
	return used, false, 0, nil
}

// deliver hands the completed message to the Sink and reports whether to
// keep reading.
func (r *reader) deliver(h *Host, c *conn) bool {
	m := c.fr.takeMessage()
	n := len(m.B)
	h.frames.Add(1)
	h.bytes.Add(uint64(n))
	h.outstanding.Add(int64(n))
	r.l.outstanding.Add(int64(n))
	r.l.m.frames.Inc()
	r.l.m.bytes.Add(n)
	c.delivered = true
	return r.l.cfg.Sink(h, Frame{b: m, h: h})
}

// writeControl sends one masked control frame (RFC 6455 §5.3: a client
// masks everything it sends).
func (r *reader) writeControl(c *conn, op ws.OpCode, payload []byte) error {
	b := r.wbuf[:0]
	b = append(b, 0x80|byte(op), 0x80|byte(len(payload)))
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	b = append(b, mask[:]...)
	b = append(b, payload...)
	ws.Cipher(b[6:], mask, 0)
	if err := c.rw.SetWriteDeadline(time.Now().Add(r.l.cfg.WriteTimeout)); err != nil {
		return err
	}
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
	case req&reqReconnect != 0:
		h.state = stateDialQueued
		h.mu.Unlock()
		l.dialQ.push(h)
	default:
		if c.delivered {
			h.failures = 1
		} else {
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
	if c.pending != nil {
		l.bufs.put(c.pending)
		c.pending = nil
	}
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
		l.cfg.OnDisconnect(h, reason, err)
	}
}
