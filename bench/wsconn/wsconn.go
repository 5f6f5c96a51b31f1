// Package wsconn is the server side of one subscribeRepos WebSocket
// connection in the bench's fake hosts (bench/replay, bench/fleet): a
// buffered writer of unmasked frames that two goroutines share, and a
// reader that answers the client's control frames.
//
// A connection has two goroutines: the handler's, which writes the stream
// (Serve's stream function), and ReadControl's, which answers pings and a
// close and discards data, as servers ignore what clients send (spec
// §9.1). Either one ending the stream closes Done. Nothing here allocates
// per frame.
package wsconn

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// MaxClientFrame bounds a data frame a client may send; a bigger one ends
// the connection (a well-behaved client sends none).
const MaxClientFrame = 1 << 16

// Conn is one server-side WebSocket connection. Its methods are safe for
// concurrent use by the writer and the control reader.
type Conn struct {
	conn net.Conn // static

	wmu sync.Mutex    // guards bw and hdr: both goroutines write
	bw  *bufio.Writer //
	hdr [ws.MaxHeaderSize]byte

	doneOnce sync.Once
	done     chan struct{} // closed when either side ends the stream
}

// New wraps an upgraded connection with a write buffer of bufSize bytes.
func New(conn net.Conn, bufSize int) *Conn {
	return &Conn{conn: conn, bw: bufio.NewWriterSize(conn, bufSize), done: make(chan struct{})}
}

// Done is closed once either side has ended the stream.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Finish ends the stream (closes Done); later calls do nothing.
func (c *Conn) Finish() { c.doneOnce.Do(func() { close(c.done) }) }

// Close closes the network connection at once, without a close frame.
func (c *Conn) Close() error { return c.conn.Close() }

// Serve answers the client's control frames from br on a goroutine of its
// own while stream writes, then ends the stream, closes the connection
// and waits for that goroutine.
func (c *Conn) Serve(br *bufio.Reader, stream func()) {
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		c.ReadControl(br)
	}()
	stream()
	c.Finish()
	c.conn.Close()
	<-readerDone
}

// Refuse sends frame (an error frame such as FutureCursor) and a normal
// close, the way a stream that will not start ends.
func (c *Conn) Refuse(frame []byte) error {
	if err := c.WriteFrame(frame, false); err != nil {
		return err
	}
	return c.WriteControl(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
}

// WriteFrame writes one binary message, unmasked (server side), and
// flushes the buffer when flush is set.
func (c *Conn) WriteFrame(f []byte, flush bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.bw.Write(AppendFrameHeader(c.hdr[:0], ws.OpBinary, len(f))); err != nil {
		return err
	}
	if _, err := c.bw.Write(f); err != nil {
		return err
	}
	if flush {
		return c.bw.Flush()
	}
	return nil
}

// Flush writes out what WriteFrame buffered.
func (c *Conn) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.bw.Flush()
}

// WriteTrickle writes one binary message in chunks pieces, flushing and
// pausing after each, so the reader sees a frame trickle in. It allocates
// the whole message: it is for the rare slow frames of a fault schedule.
// It returns io.ErrClosedPipe once the stream has ended.
func (c *Conn) WriteTrickle(f []byte, chunks int, pause time.Duration) error {
	msg := append(AppendFrameHeader(nil, ws.OpBinary, len(f)), f...)
	step := (len(msg) + chunks - 1) / chunks
	for len(msg) > 0 {
		n := min(step, len(msg))
		c.wmu.Lock()
		_, err := c.bw.Write(msg[:n])
		if err == nil {
			err = c.bw.Flush()
		}
		c.wmu.Unlock()
		if err != nil {
			return err
		}
		msg = msg[n:]
		select {
		case <-time.After(pause):
		case <-c.done:
			return io.ErrClosedPipe
		}
	}
	return nil
}

// WriteControl writes one control frame and flushes.
func (c *Conn) WriteControl(op ws.OpCode, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.bw.Write(AppendFrameHeader(c.hdr[:0], op, len(payload))); err != nil {
		return err
	}
	if _, err := c.bw.Write(payload); err != nil {
		return err
	}
	return c.bw.Flush()
}

// ReadControl answers pings and a close, discards data frames of up to
// MaxClientFrame bytes and ends the stream when the client leaves or
// breaks the rules (a longer data frame, a fragmented or oversized
// control frame).
func (c *Conn) ReadControl(br *bufio.Reader) {
	defer c.Finish()
	var scratch [ws.MaxHeaderSize - 2]byte
	var payload [125]byte
	for {
		h, err := ws.ReadHeaderBuffer(br, scratch[:])
		if err != nil {
			return
		}
		if !h.OpCode.IsControl() {
			if h.Length > MaxClientFrame {
				return
			}
			if _, err := io.CopyN(io.Discard, br, h.Length); err != nil {
				return
			}
			continue
		}
		if h.Length > int64(len(payload)) || !h.Fin {
			return
		}
		p := payload[:h.Length]
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpPing:
			if c.WriteControl(ws.OpPong, p) != nil {
				return
			}
		case ws.OpClose:
			_ = c.WriteControl(ws.OpClose, p[:min(len(p), 2)])
			return
		}
	}
}

// AppendFrameHeader appends a final, unmasked WebSocket frame header (RFC
// 6455 §5.2), as a server sends it, without the allocation ws.WriteHeader
// makes.
func AppendFrameHeader(b []byte, op ws.OpCode, n int) []byte {
	b = append(b, 0x80|byte(op))
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}
