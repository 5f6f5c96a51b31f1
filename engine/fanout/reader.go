package fanout

import (
	"bufio"
	"errors"
	"io"

	"github.com/gobwas/ws"
)

// Errors ReadClient returns.
var (
	// ErrClientClosed: the client sent a close frame or hung up, or the
	// socket was closed under the reader.
	ErrClientClosed = errors.New("fanout: client closed the connection")
	// ErrProtocol: the client sent a frame RFC 6455 forbids from a client
	// (unmasked, a reserved opcode, a stray continuation, an oversized
	// control frame, a length with its top bit set).
	ErrProtocol = errors.New("fanout: client broke the WebSocket protocol")
)

// ReadClient is the reader goroutine's loop: it reads client frames from r
// until the connection ends and returns why (ErrClientClosed, ErrProtocol,
// or the error data returned). Control frames are handled here: their
// payloads (at most 125 bytes, enforced by ws.CheckHeader) are unmasked
// into a fixed array, a ping is handed to the writer to answer (Pong), a
// close ends the loop. Each data frame's header, fragments included, goes
// to data, which must consume exactly h.Length payload bytes from r
// (unmasking them with h.Mask if it keeps them; Discard skips them) and
// returns non-nil to end the loop.
func (c *Conn[R]) ReadClient(r *bufio.Reader, data func(h ws.Header, r *bufio.Reader) error) error {
	var hdr [ws.MaxHeaderSize - 2]byte
	var ctl [125]byte
	state := ws.StateServerSide
	for {
		h, err := ws.ReadHeaderBuffer(r, hdr[:])
		if err != nil {
			if err == ws.ErrHeaderLengthMSB || err == ws.ErrHeaderLengthUnexpected {
				return ErrProtocol
			}
			return ErrClientClosed
		}
		if err := ws.CheckHeader(h, state); err != nil {
			return ErrProtocol
		}
		if h.OpCode.IsControl() {
			p := ctl[:h.Length]
			if _, err := io.ReadFull(r, p); err != nil {
				return ErrClientClosed
			}
			ws.Cipher(p, h.Mask, 0)
			switch h.OpCode {
			case ws.OpClose:
				return ErrClientClosed
			case ws.OpPing:
				c.queuePong(p)
			}
			continue
		}
		// Track fragmentation so CheckHeader rejects stray continuations.
		if h.Fin {
			state = state.Clear(ws.StateFragmented)
		} else {
			state = state.Set(ws.StateFragmented)
		}
		if err := data(h, r); err != nil {
			return err
		}
	}
}

// Discard is the data function of ReadClient for a stream that takes
// nothing from its client: it skips the payload without buffering it.
func Discard(h ws.Header, r *bufio.Reader) error {
	for n := h.Length; n > 0; {
		d, err := r.Discard(int(min(n, 1<<30)))
		n -= int64(d)
		if err != nil {
			return ErrClientClosed
		}
	}
	return nil
}
