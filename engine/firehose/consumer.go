package firehose

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atrelay/relay/engine/wsframe"
	"github.com/atrelay/relay/pool"
)

// finalWriteTimeout bounds the courtesy writes (error frame, close frame)
// made while disconnecting, so Close never waits long on a dead peer.
const finalWriteTimeout = time.Second

// replayPassFrames ends a Log replay pass after this many frames; the next
// pass re-seeks. It bounds how long one slow consumer keeps a store
// iterator (and the files it pins) open.
const replayPassFrames = 4096

// Internal sentinels that end a Log replay pass early.
var (
	errPassDone = errors.New("firehose: replay pass frame budget spent")
	errHandover = errors.New("firehose: replay reached the ring")
	errTooSlow  = errors.New("firehose: position fell out of the log window")
	errStopped  = errors.New("firehose: consumer stopped")
)

// consumerStats are written by the consumer goroutine and read by the admin
// view and the metrics gauges.
type consumerStats struct {
	pos    atomic.Uint64
	bytes  atomic.Uint64
	frames atomic.Uint64
	mode   atomic.Uint32 // a Mode
}

// consumer is one subscribeRepos connection. Its writer side runs in
// serve's goroutine and is the only writer to conn; a reader goroutine
// (readLoop) discards client frames and asks the writer for pongs.
type consumer struct {
	// Static after newConsumer.
	h           *Hub
	conn        net.Conn
	remote      string
	userAgent   string
	cursor      uint64
	hasCursor   bool
	key         netip.Addr // the client's admission key (clientip.Key)
	connectedAt time.Time
	ctx         context.Context
	cancel      context.CancelFunc
	wake        chan struct{} // one slot: Publish and readLoop send without blocking
	replayFn    func(seq uint64, frame []byte) error

	// waiting says c is on h.waiting. Guarded by h.mu.
	waiting bool

	// Owned by the writer goroutine.
	pos       uint64 // seq of the last frame sent, or the start position
	next      uint64 // ring index after the last slot fill looked at
	nextValid bool   // next is meaningful (cleared on every replay pass)
	wrote     bool   // something was written since the last ping tick
	batch     []*pool.Frame
	seqs      []uint64
	hdrs      []byte      // BatchFrames WebSocket headers, wsframe.HeaderMax apart
	iovBuf    [][]byte    // backing array of iov
	iov       net.Buffers // the batch being written; consumed by WriteTo
	ctlHdr    [wsframe.HeaderMax]byte
	bw        *bufio.Writer // replay buffer, held only during a replay pass
	replayErr error         // the write error that ended a replay pass
	passLeft  int           // frames left in this replay pass
	pong      [125]byte
	pongLen   int

	// pongWanted is set by readLoop when a ping arrived; the writer sends
	// the pong at the next frame boundary.
	pongWanted atomic.Bool

	// dmu guards the fields below. stop takes it to abort a blocked write
	// without waiting for the write to finish.
	dmu         sync.Mutex
	stopped     bool
	writing     bool
	why         cause
	pingPayload [125]byte
	pingLen     int

	stats consumerStats
}

func newConsumer(h *Hub, conn net.Conn, parent context.Context) *consumer {
	n := h.cfg.BatchFrames
	c := &consumer{
		h:           h,
		conn:        conn,
		remote:      conn.RemoteAddr().String(),
		connectedAt: time.Now(),
		wake:        make(chan struct{}, 1),
		batch:       make([]*pool.Frame, n),
		seqs:        make([]uint64, n),
		hdrs:        make([]byte, n*wsframe.HeaderMax),
		iovBuf:      make([][]byte, 0, 2*n),
	}
	c.ctx, c.cancel = context.WithCancel(parent)
	c.replayFn = c.replayFrame
	return c
}

// stop ends the consumer for reason why (the first reason wins) and aborts
// a write in progress.
func (c *consumer) stop(why cause) {
	c.dmu.Lock()
	if !c.stopped {
		c.stopped = true
		c.why = why
		if c.writing {
			_ = c.conn.SetWriteDeadline(time.Unix(1, 0))
		}
	}
	c.dmu.Unlock()
	c.cancel()
}

// failed returns the disconnect cause for a write error: the stop reason
// when the write was aborted by stop, else a write error.
func (c *consumer) failed() cause {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.stopped {
		return c.why
	}
	return causeWriteError
}

// beginWrite arms the write deadline; after stop it refuses unless final.
func (c *consumer) beginWrite(final bool) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.stopped && !final {
		return errStopped
	}
	c.writing = true
	d := c.h.cfg.WriteTimeout
	if final {
		d = min(d, finalWriteTimeout)
	}
	return c.conn.SetWriteDeadline(time.Now().Add(d))
}

func (c *consumer) endWrite() {
	c.dmu.Lock()
	c.writing = false
	c.dmu.Unlock()
}

// Write writes p to the socket under the write deadline; it is the
// io.Writer beneath the replay buffer.
func (c *consumer) Write(p []byte) (int, error) {
	if err := c.beginWrite(false); err != nil {
		return 0, err
	}
	n, err := c.conn.Write(p)
	c.endWrite()
	return n, err
}

// writeIOV writes c.iov with one writev under the write deadline.
func (c *consumer) writeIOV(final bool) error {
	if err := c.beginWrite(final); err != nil {
		return err
	}
	_, err := c.iov.WriteTo(c.conn)
	c.endWrite()
	return err
}

// writeFrame writes one whole WebSocket frame, behind any replayed bytes
// still buffered.
func (c *consumer) writeFrame(op byte, payload []byte, final bool) error {
	k := wsframe.PutHeader(c.ctlHdr[:], op, len(payload))
	if c.bw != nil {
		_, _ = c.bw.Write(c.ctlHdr[:k])
		_, _ = c.bw.Write(payload)
		return c.bw.Flush()
	}
	c.iov = append(c.iovBuf[:0], c.ctlHdr[:k], payload)
	return c.writeIOV(final)
}

// sendPong answers the latest client ping.
func (c *consumer) sendPong() error {
	c.pongWanted.Store(false)
	c.dmu.Lock()
	c.pongLen = copy(c.pong[:], c.pingPayload[:c.pingLen])
	c.dmu.Unlock()
	return c.writeFrame(wsframe.OpPong, c.pong[:c.pongLen], false)
}

// serve runs the consumer to its end, from the connect-time cursor checks
// to the disconnect, and gives back its connection slot. It runs in its own
// goroutine, started by ServeHTTP.
func (c *consumer) serve() {
	defer c.h.wg.Done()
	why := c.run()
	c.finish(why)
	c.h.unregister(c)
	c.h.adm.release(c.key)
	c.h.m.disconnects[why].Inc()
	c.h.cfg.Logger.Debug("firehose consumer disconnected", "remote", c.remote,
		"reason", why.String(), "position", c.pos, "frames", c.stats.frames.Load())
}

// run applies the cursor rules and then alternates between the ring, the
// Log and waiting until something ends the connection.
func (c *consumer) run() cause {
	if why := c.start(); why != causeNone {
		return why
	}
	ticker := time.NewTicker(c.h.cfg.PingInterval)
	defer ticker.Stop()
	for {
		if c.pongWanted.Load() {
			if err := c.sendPong(); err != nil {
				return c.failed()
			}
		}
		n, res := c.h.fill(c)
		switch res {
		case fillClosed:
			return causeHubClosed
		case fillReplay:
			if why := c.replay(); why != causeNone {
				return why
			}
		case fillWait:
			if why := c.wait(ticker); why != causeNone {
				return why
			}
		case fillFrames:
			if err := c.writeBatch(n); err != nil {
				return c.failed()
			}
		}
	}
}

// start sets the initial position from the cursor (spec §9.3).
func (c *consumer) start() cause {
	h := c.h
	if !c.hasCursor {
		c.pos = h.startPosition()
		c.stats.pos.Store(c.pos)
		return causeNone
	}
	if c.cursor > h.newestDurable() {
		return causeFutureCursor
	}
	c.pos = c.cursor
	if oldest, ok := h.log.OldestSeq(); ok && c.cursor+1 < oldest {
		if err := c.writeFrame(wsframe.OpBinary, h.ctrl.outdatedCursor, false); err != nil {
			return c.failed()
		}
		c.sentControl(len(h.ctrl.outdatedCursor))
		c.pos = oldest - 1
	}
	c.stats.pos.Store(c.pos)
	return causeNone
}

// wait blocks until a publish, a stop or a ping tick; an idle tick sends a
// ping.
func (c *consumer) wait(ticker *time.Ticker) cause {
	c.stats.mode.Store(uint32(ModeLive))
	select {
	case <-c.wake:
		return causeNone
	case <-c.ctx.Done():
		return c.failed()
	case <-ticker.C:
		if c.wrote {
			c.wrote = false
			return causeNone
		}
		if err := c.writeFrame(wsframe.OpPing, nil, false); err != nil {
			return c.failed()
		}
		c.h.m.pings.Inc()
		return causeNone
	}
}

// writeBatch writes the n frames fill took from the ring straight from
// their shared buffers, then releases them.
func (c *consumer) writeBatch(n int) error {
	c.stats.mode.Store(uint32(ModeLive))
	c.iov = c.iovBuf[:0]
	total := 0
	for i := range n {
		b := c.batch[i].Bytes()
		hdr := c.hdrs[i*wsframe.HeaderMax : (i+1)*wsframe.HeaderMax]
		k := wsframe.PutHeader(hdr, wsframe.OpBinary, len(b))
		c.iov = append(c.iov, hdr[:k], b)
		total += k + len(b)
	}
	err := c.writeIOV(false)
	for i := range n {
		c.batch[i].Release()
		c.batch[i] = nil
	}
	if err != nil {
		return err
	}
	c.pos = c.seqs[n-1]
	c.sent(n, total)
	c.h.m.framesLive.Add(n)
	return nil
}

func (c *consumer) sent(frames, bytes int) {
	c.wrote = true
	c.stats.pos.Store(c.pos)
	c.stats.frames.Add(uint64(frames))
	c.stats.bytes.Add(uint64(bytes))
	c.h.m.bytesSent.Add(bytes)
}

func (c *consumer) sentControl(n int) {
	c.wrote = true
	c.stats.bytes.Add(uint64(n))
	c.h.m.bytesSent.Add(n)
	c.h.m.framesCtrl.Inc()
}

// outOfWindow reports whether the Log no longer holds the seq after c.pos.
func (c *consumer) outOfWindow() bool {
	oldest, ok := c.h.log.OldestSeq()
	return !ok || oldest > c.pos+1
}

// replay runs one Log pass from c.pos until it reaches the ring's floor or
// the end of the Log.
func (c *consumer) replay() cause {
	h := c.h
	c.stats.mode.Store(uint32(ModeReplay))
	h.m.replayPasses.Inc()
	if c.outOfWindow() {
		return causeTooSlow
	}
	c.bw = h.getReplayWriter(c)
	c.replayErr = nil
	c.passLeft = replayPassFrames
	start := c.pos
	err := h.log.Replay(c.ctx, c.pos, c.replayFn)
	ferr := c.bw.Flush()
	h.putReplayWriter(c.bw)
	c.bw = nil
	c.stats.pos.Store(c.pos)
	switch {
	case c.replayErr != nil:
		return c.failed()
	case errors.Is(err, errTooSlow):
		return causeTooSlow
	case err != nil && !errors.Is(err, errHandover) && !errors.Is(err, errPassDone):
		if c.ctx.Err() != nil {
			return c.failed()
		}
		h.cfg.Logger.Warn("firehose replay failed", "remote", c.remote, "after", start, "err", err)
		return causeReplayError
	case ferr != nil:
		return c.failed()
	}
	if c.pos == start && c.pos < h.floor.Load() {
		// The Log has nothing after c.pos although the ring has moved on:
		// those events were trimmed away under us.
		return causeTooSlow
	}
	return causeNone
}

// replayFrame is the Log callback of a replay pass (stored in c.replayFn so
// passing it allocates nothing).
func (c *consumer) replayFrame(seq uint64, frame []byte) error {
	if seq <= c.pos {
		return nil
	}
	if seq != c.pos+1 && c.outOfWindow() {
		return errTooSlow
	}
	if c.pongWanted.Load() {
		if err := c.sendPong(); err != nil {
			c.replayErr = err
			return err
		}
	}
	k := wsframe.PutHeader(c.ctlHdr[:], wsframe.OpBinary, len(frame))
	_, _ = c.bw.Write(c.ctlHdr[:k])
	if _, err := c.bw.Write(frame); err != nil {
		c.replayErr = err
		return err
	}
	c.pos = seq
	c.sent(1, k+len(frame))
	c.h.m.framesReplay.Inc()
	if seq >= c.h.floor.Load() {
		return errHandover
	}
	if c.passLeft--; c.passLeft <= 0 {
		return errPassDone
	}
	return nil
}

// finish sends the error frame the cause calls for and a close frame, then
// closes the socket.
func (c *consumer) finish(why cause) {
	h := c.h
	var errFrame []byte
	code := uint16(1000) // normal closure
	switch why {
	case causeTooSlow:
		errFrame = h.ctrl.consumerTooSlow
		code = 1008 // policy violation
	case causeFutureCursor:
		errFrame = h.ctrl.futureCursor
	case causeHubClosed:
		code = 1001 // going away
	case causeReplayError:
		code = 1011 // internal error
	}
	if why != causeWriteError && why != causeProtocol {
		if errFrame != nil && c.writeFrame(wsframe.OpBinary, errFrame, true) == nil {
			c.sentControl(len(errFrame))
		}
		var body [2]byte
		body[0], body[1] = byte(code>>8), byte(code)
		_ = c.writeFrame(wsframe.OpClose, body[:], true)
	}
	c.stop(why)
	_ = c.conn.Close()
}

// info returns the admin snapshot of c; newest is the hub's newest seq.
func (c *consumer) info(newest uint64) ConsumerInfo {
	pos := c.stats.pos.Load()
	var lag uint64
	if newest > pos {
		lag = newest - pos
	}
	return ConsumerInfo{
		RemoteAddr:  c.remote,
		UserAgent:   c.userAgent,
		Cursor:      c.cursor,
		HasCursor:   c.hasCursor,
		Position:    pos,
		Lag:         lag,
		BytesSent:   c.stats.bytes.Load(),
		FramesSent:  c.stats.frames.Load(),
		ConnectedAt: c.connectedAt,
		Mode:        Mode(c.stats.mode.Load()),
	}
}
