package firehose

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/atrelay/relay/engine/fanout"
	"github.com/atrelay/relay/engine/wsframe"
)

// replayPassFrames ends a Log replay pass after this many frames; the next
// pass re-seeks. It bounds how long one slow consumer keeps a store
// iterator (and the files it pins) open.
const replayPassFrames = 4096

// Internal sentinels that end a Log replay pass early.
var (
	errPassDone = errors.New("firehose: replay pass frame budget spent")
	errHandover = errors.New("firehose: replay reached the ring")
	errTooSlow  = errors.New("firehose: position fell out of the log window")
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
// serve's goroutine and writes only through out; a reader goroutine
// (readLoop) discards client frames and hands pings to out.
type consumer struct {
	// Static after newConsumer.
	h           *Hub
	out         *fanout.Conn[cause]
	remote      string
	userAgent   string
	cursor      uint64
	hasCursor   bool
	key         netip.Addr // the client's admission key (clientip.Key)
	connectedAt time.Time
	replayFn    func(seq uint64, frame []byte) error

	// waiting says c is on h.waiting. Guarded by h.mu.
	waiting bool

	// Owned by the writer goroutine.
	pos       uint64   // seq of the last frame sent, or the start position
	next      uint64   // ring index after the last slot fill looked at
	nextValid bool     // next is meaningful (cleared on every replay pass)
	seqs      []uint64 // seqs of the frames in out.Batch()
	replayErr error    // the write error that ended a replay pass
	passLeft  int      // frames left in this replay pass

	stats consumerStats
}

func newConsumer(h *Hub, conn net.Conn) *consumer {
	c := &consumer{
		h:           h,
		out:         fanout.NewConn[cause](&h.ep, conn, context.Background()),
		remote:      conn.RemoteAddr().String(),
		connectedAt: time.Now(),
		seqs:        make([]uint64, h.ep.BatchFrames),
	}
	c.replayFn = c.replayFrame
	return c
}

// stop ends the consumer for reason why (the first reason wins) and aborts
// a write in progress.
func (c *consumer) stop(why cause) { c.out.Stop(why, "") }

// failed returns the disconnect cause for a write error: the stop reason
// when the write was aborted by stop, else a write error.
func (c *consumer) failed() cause { return c.out.Failed(causeWriteError) }

// serve runs the consumer to its end, from the connect-time cursor checks
// to the disconnect, and gives back its connection slot. It runs in its own
// goroutine, started by ServeHTTP.
func (c *consumer) serve() {
	defer c.h.wg.Done()
	why := c.run()
	c.finish(why)
	// Counted before the consumer leaves the hub's set: whoever sees it
	// gone sees its disconnect counted.
	c.h.m.disconnects[why].Inc()
	c.h.unregister(c)
	c.h.adm.Release(c.key)
	c.h.cfg.Logger.Debug("firehose consumer disconnected", "remote", c.remote,
		"reason", why.String(), "position", c.pos, "frames", c.stats.frames.Load())
}

// run applies the cursor rules and then alternates between the ring, the
// Log and waiting until something ends the connection.
func (c *consumer) run() cause {
	if why := c.start(); why != causeNone {
		return why
	}
	for {
		if err := c.out.Pong(); err != nil {
			return c.failed()
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
			if why := c.wait(); why != causeNone {
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
		if err := c.out.WriteMessage(wsframe.OpBinary, h.ctrl.outdatedCursor); err != nil {
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
func (c *consumer) wait() cause {
	c.stats.mode.Store(uint32(ModeLive))
	pinged, err := c.out.Wait()
	if err != nil {
		return c.failed()
	}
	if pinged {
		c.h.m.pings.Inc()
	}
	return causeNone
}

// writeBatch writes the n frames fill took from the ring straight from
// their shared buffers; out releases them.
func (c *consumer) writeBatch(n int) error {
	c.stats.mode.Store(uint32(ModeLive))
	total, err := c.out.WriteBatch(wsframe.OpBinary, n)
	if err != nil {
		return err
	}
	c.pos = c.seqs[n-1]
	c.sent(n, total)
	c.h.m.framesLive.Add(n)
	return nil
}

func (c *consumer) sent(frames, bytes int) {
	c.stats.pos.Store(c.pos)
	c.stats.frames.Add(uint64(frames))
	c.stats.bytes.Add(uint64(bytes))
	c.h.m.bytesSent.Add(bytes)
}

func (c *consumer) sentControl(n int) {
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
	c.out.BeginReplay()
	c.replayErr = nil
	c.passLeft = replayPassFrames
	start := c.pos
	err := h.log.Replay(c.out.Context(), c.pos, c.replayFn)
	ferr := c.out.EndReplay()
	c.stats.pos.Store(c.pos)
	switch {
	case c.replayErr != nil:
		return c.failed()
	case errors.Is(err, errTooSlow):
		return causeTooSlow
	case err != nil && !errors.Is(err, errHandover) && !errors.Is(err, errPassDone):
		if c.out.Context().Err() != nil {
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
	if err := c.out.Pong(); err != nil {
		c.replayErr = err
		return err
	}
	n, err := c.out.Buffer(wsframe.OpBinary, frame)
	if err != nil {
		c.replayErr = err
		return err
	}
	c.pos = seq
	c.sent(1, n)
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
		if c.out.Goodbye(errFrame, code, "") {
			c.sentControl(len(errFrame))
		}
	}
	c.out.Close(why)
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
