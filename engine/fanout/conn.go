package fanout

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

// finalWriteTimeout bounds the goodbye writes (error message, close frame)
// made while disconnecting, so closing never waits long on a dead peer.
const finalWriteTimeout = time.Second

// ErrStopped is returned by a write attempted after Stop (Goodbye's writes
// excepted) and by Wait once the connection is stopped.
var ErrStopped = errors.New("fanout: connection stopped")

// Endpoint is what the connections of one stream endpoint share: their
// write settings and the pool of replay buffers. Set the exported fields
// in a literal (the stream's validated Config supplies them, all positive)
// and do not change or copy it once a Conn uses it; it is then safe for
// concurrent use.
type Endpoint struct {
	// BatchFrames is the most frames one WriteBatch writes: the length of
	// every Conn's Batch.
	BatchFrames int
	// WriteTimeout is how long one socket write may block before it fails
	// and the consumer is treated as dead.
	WriteTimeout time.Duration
	// PingInterval is the ping period of Wait: a consumer sent no message
	// during a whole interval is pinged at the next tick.
	PingInterval time.Duration
	// ReplayBufferBytes is the size of the buffer a replay pass writes
	// through.
	ReplayBufferBytes int

	// replayBufs recycles replay buffers (*bufio.Writer of
	// ReplayBufferBytes), so only replaying consumers hold one.
	replayBufs sync.Pool
}

// getReplayWriter returns a replay buffer writing to w.
func (ep *Endpoint) getReplayWriter(w *socket) *bufio.Writer {
	if bw, ok := ep.replayBufs.Get().(*bufio.Writer); ok {
		bw.Reset(w)
		return bw
	}
	return bufio.NewWriterSize(w, ep.ReplayBufferBytes)
}

// putReplayWriter recycles bw, which must be flushed or abandoned.
func (ep *Endpoint) putReplayWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	ep.replayBufs.Put(bw)
}

// Conn is the server side of one consumer's WebSocket: its only writer,
// the stop flag that aborts a blocked write, and the ping/pong state shared
// with its reader. R is the stream's closed set of disconnect reasons; its
// zero value means none. See the package doc for which goroutine calls
// what.
type Conn[R ~uint8] struct {
	// Static after NewConn.
	ep     *Endpoint
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{} // one slot: Wake sends without blocking
	sock   socket

	// Owned by the writer goroutine.
	batch  []*pool.Frame
	hdrs   []byte                  // len(batch) headers, wsframe.HeaderMax apart
	iovBuf [][]byte                // backing array of iov
	iov    net.Buffers             // the frames being written; consumed by WriteTo
	hdr    [wsframe.HeaderMax]byte // header of a frame written alone
	ctl    [125]byte               // payload of a pong or close frame being written
	bw     *bufio.Writer           // replay buffer, held only during a replay pass
	ticker *time.Ticker            // Wait's ping ticker, started by the first Wait
	wrote  bool                    // a message was written since the last ping tick

	// pongWanted is set by the reader when a ping arrived; the writer
	// answers in Pong, at the next message boundary.
	pongWanted atomic.Bool

	// pmu guards the latest ping payload: the reader writes it, Pong
	// copies it out.
	pmu     sync.Mutex
	ping    [125]byte
	pingLen int
}

// NewConn returns the Conn of a consumer connected on conn, whose Context
// is a child of parent (Stop cancels it).
func NewConn[R ~uint8](ep *Endpoint, conn net.Conn, parent context.Context) *Conn[R] {
	n := ep.BatchFrames
	c := &Conn[R]{
		ep:     ep,
		wake:   make(chan struct{}, 1),
		sock:   socket{conn: conn, timeout: ep.WriteTimeout},
		batch:  make([]*pool.Frame, n),
		hdrs:   make([]byte, n*wsframe.HeaderMax),
		iovBuf: make([][]byte, 0, 2*n),
	}
	c.ctx, c.cancel = context.WithCancel(parent)
	return c
}

// Context is done once the connection is stopped (or its parent is); long
// reads made for the consumer (a log replay) run under it.
func (c *Conn[R]) Context() context.Context { return c.ctx }

// Wake makes the writer's current or next Wait return. It never blocks;
// wakes made while the writer is busy coalesce.
func (c *Conn[R]) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Stop ends the connection for reason why, with text for the close frame
// (the first reason wins), aborts a write in progress and cancels Context.
// It never blocks on the socket. Any goroutine may call it.
func (c *Conn[R]) Stop(why R, text string) {
	c.sock.stop(uint8(why), text)
	c.cancel()
}

// Reason returns the reason and text of the first Stop; stopped is false
// when nothing stopped the connection yet.
func (c *Conn[R]) Reason() (why R, text string, stopped bool) {
	w, text, stopped := c.sock.reason()
	return R(w), text, stopped
}

// Failed returns why a write or Wait failed: the reason the connection
// was stopped with, or otherwise (the stream's write-error reason) when
// the write failed on its own.
func (c *Conn[R]) Failed(otherwise R) R {
	if why, _, stopped := c.Reason(); stopped {
		return why
	}
	return otherwise
}

// Batch returns the slots WriteBatch writes from, BatchFrames of them.
// Filling a slot hands the Conn one reference on the frame.
func (c *Conn[R]) Batch() []*pool.Frame { return c.batch }

// WriteBatch writes Batch()[:n] (n ≥ 1), each frame as one message with
// opcode op, with one writev straight from the shared buffers, then
// releases the n frames and clears their slots, whether or not the write
// succeeded. It returns the bytes written, headers included.
func (c *Conn[R]) WriteBatch(op byte, n int) (int, error) {
	c.iov = c.iovBuf[:0]
	total := 0
	for i, f := range c.batch[:n] {
		b := f.Bytes()
		hdr := c.hdrs[i*wsframe.HeaderMax : (i+1)*wsframe.HeaderMax]
		k := wsframe.PutHeader(hdr, op, len(b))
		c.iov = append(c.iov, hdr[:k], b)
		total += k + len(b)
	}
	err := c.writeIOV(false)
	for i := range n {
		c.batch[i].Release()
		c.batch[i] = nil
	}
	if err != nil {
		return 0, err
	}
	c.wrote = true
	return total, nil
}

// WriteMessage writes one whole message now, behind any replayed bytes
// still buffered: for a message the stream sends besides its events (the
// firehose's #info).
func (c *Conn[R]) WriteMessage(op byte, payload []byte) error {
	if err := c.writeFrame(op, payload, false); err != nil {
		return err
	}
	c.wrote = true
	return nil
}

// BeginReplay takes a replay buffer from the endpoint's pool: until
// EndReplay, Buffer appends messages to it and every other write goes out
// behind them.
func (c *Conn[R]) BeginReplay() {
	c.bw = c.ep.getReplayWriter(&c.sock)
}

// Buffer appends one message to the replay buffer, which writes to the
// socket whenever it fills, and returns its size, header included. The
// payload is copied, so it need only be valid during the call. Only
// between BeginReplay and EndReplay.
func (c *Conn[R]) Buffer(op byte, payload []byte) (int, error) {
	k := wsframe.PutHeader(c.hdr[:], op, len(payload))
	// A failed write sticks in the buffer: the second Write reports it.
	_, _ = c.bw.Write(c.hdr[:k])
	if _, err := c.bw.Write(payload); err != nil {
		return 0, err
	}
	c.wrote = true
	return k + len(payload), nil
}

// EndReplay flushes the replay buffer, gives it back to the pool and
// returns the flush's error.
func (c *Conn[R]) EndReplay() error {
	err := c.bw.Flush()
	c.ep.putReplayWriter(c.bw)
	c.bw = nil
	return err
}

// Pong answers the client's latest ping, if one arrived since the last
// Pong; the writer calls it at message boundaries.
func (c *Conn[R]) Pong() error {
	if !c.pongWanted.Load() {
		return nil
	}
	c.pongWanted.Store(false)
	c.pmu.Lock()
	n := copy(c.ctl[:], c.ping[:c.pingLen])
	c.pmu.Unlock()
	return c.writeFrame(wsframe.OpPong, c.ctl[:n], false)
}

// Wait blocks until Wake, Stop or a ping tick, starting the ping ticker on
// its first call. On a tick after an interval in which no message was
// written it pings the client (pinged). It fails with ErrStopped once the
// connection is stopped, or with the ping's write error.
func (c *Conn[R]) Wait() (pinged bool, err error) {
	if c.ticker == nil {
		c.ticker = time.NewTicker(c.ep.PingInterval)
	}
	select {
	case <-c.wake:
		return false, nil
	case <-c.ctx.Done():
		return false, ErrStopped
	case <-c.ticker.C:
		if c.wrote {
			c.wrote = false
			return false, nil
		}
		if err := c.writeFrame(wsframe.OpPing, nil, false); err != nil {
			return false, err
		}
		return true, nil
	}
}

// Goodbye writes the frames of an orderly end, under a short deadline and
// even after Stop: last, when not nil, as one binary message (an error
// frame), then a close frame with code and text (cut to fit 125 bytes).
// lastSent reports whether last was written.
func (c *Conn[R]) Goodbye(last []byte, code uint16, text string) (lastSent bool) {
	if last != nil {
		lastSent = c.writeFrame(wsframe.OpBinary, last, true) == nil
	}
	c.ctl[0], c.ctl[1] = byte(code>>8), byte(code)
	n := 2 + copy(c.ctl[2:], text)
	_ = c.writeFrame(wsframe.OpClose, c.ctl[:n], true)
	return lastSent
}

// Close stops the connection with why (unless it was stopped already) and
// closes the socket, which also ends the reader. The writer calls it last.
func (c *Conn[R]) Close(why R) {
	c.Stop(why, "")
	if c.ticker != nil {
		c.ticker.Stop()
	}
	_ = c.sock.conn.Close()
}

// writeFrame writes one whole frame: into the replay buffer and flushed
// while a replay pass holds one, so it goes out behind the replayed bytes,
// else with one writev; final marks a goodbye write.
func (c *Conn[R]) writeFrame(op byte, payload []byte, final bool) error {
	k := wsframe.PutHeader(c.hdr[:], op, len(payload))
	if c.bw != nil {
		_, _ = c.bw.Write(c.hdr[:k])
		_, _ = c.bw.Write(payload)
		return c.bw.Flush()
	}
	c.iov = append(c.iovBuf[:0], c.hdr[:k], payload)
	return c.writeIOV(final)
}

// writeIOV writes c.iov with one writev under the write deadline.
func (c *Conn[R]) writeIOV(final bool) error {
	if err := c.sock.begin(final); err != nil {
		return err
	}
	_, err := c.iov.WriteTo(c.sock.conn)
	c.sock.end()
	return err
}

// queuePong records the latest ping payload for the writer and wakes it.
// Called by the reader.
func (c *Conn[R]) queuePong(payload []byte) {
	c.pmu.Lock()
	c.pingLen = copy(c.ping[:], payload)
	c.pmu.Unlock()
	c.pongWanted.Store(true)
	c.Wake()
}

// socket is the connection's socket with the stop flag that guards its
// writes; it is also the io.Writer beneath a replay buffer.
type socket struct {
	// Static after NewConn.
	conn    net.Conn
	timeout time.Duration

	// mu guards the fields below. stop takes it to abort a blocked write
	// without waiting for the write to finish.
	mu      sync.Mutex
	stopped bool
	writing bool
	why     uint8  // the first stop reason (an R)
	text    string // its close-frame text
}

// stop records the first reason and aborts a write in progress.
func (s *socket) stop(why uint8, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped, s.why, s.text = true, why, text
	if s.writing {
		_ = s.conn.SetWriteDeadline(time.Unix(1, 0))
	}
}

func (s *socket) reason() (why uint8, text string, stopped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.why, s.text, s.stopped
}

// begin arms the write deadline; after stop it refuses unless final.
func (s *socket) begin(final bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped && !final {
		return ErrStopped
	}
	s.writing = true
	d := s.timeout
	if final {
		d = min(d, finalWriteTimeout)
	}
	return s.conn.SetWriteDeadline(time.Now().Add(d))
}

func (s *socket) end() {
	s.mu.Lock()
	s.writing = false
	s.mu.Unlock()
}

// Write writes p to the socket under the write deadline.
func (s *socket) Write(p []byte) (int, error) {
	if err := s.begin(false); err != nil {
		return 0, err
	}
	n, err := s.conn.Write(p)
	s.end()
	return n, err
}
