package firehose

import (
	"bufio"
	"io"

	"github.com/gobwas/ws"
)

// readLoop is the consumer's reader goroutine: the stream is server→client
// only (spec §9.1), so client frames are discarded, a ping is handed to the
// writer to answer, and a close frame, a protocol error or a read error
// (the client hung up, or finish closed the socket) stops the consumer.
func (c *consumer) readLoop(r *bufio.Reader) {
	defer c.h.wg.Done()
	why := discardClientFrames(r, c.queuePong)
	c.stop(why)
}

// queuePong records the latest ping payload for the writer and wakes it.
func (c *consumer) queuePong(payload []byte) {
	c.dmu.Lock()
	c.pingLen = copy(c.pingPayload[:], payload)
	c.dmu.Unlock()
	c.pongWanted.Store(true)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// discardClientFrames reads client WebSocket frames from r until the
// stream ends and returns why: causeClientClosed for a close frame or a
// read error, causeProtocol for a frame RFC 6455 forbids from a client.
// Data payloads are skipped without being buffered; control payloads
// (at most 125 bytes, enforced by ws.CheckHeader) are unmasked into a
// fixed array and pings are passed to onPing, whose argument is valid
// only during the call.
func discardClientFrames(r *bufio.Reader, onPing func(payload []byte)) cause {
	var hdr [ws.MaxHeaderSize - 2]byte
	var ctl [125]byte
	state := ws.StateServerSide
	for {
		h, err := ws.ReadHeaderBuffer(r, hdr[:])
		if err != nil {
			if err == ws.ErrHeaderLengthMSB || err == ws.ErrHeaderLengthUnexpected {
				return causeProtocol
			}
			return causeClientClosed
		}
		if err := ws.CheckHeader(h, state); err != nil {
			return causeProtocol
		}
		if h.OpCode.IsControl() {
			p := ctl[:h.Length]
			if _, err := io.ReadFull(r, p); err != nil {
				return causeClientClosed
			}
			ws.Cipher(p, h.Mask, 0)
			switch h.OpCode {
			case ws.OpClose:
				return causeClientClosed
			case ws.OpPing:
				onPing(p)
			}
			continue
		}
		// Track fragmentation so CheckHeader can reject stray
		// continuation frames.
		if h.Fin {
			state = state.Clear(ws.StateFragmented)
		} else {
			state = state.Set(ws.StateFragmented)
		}
		for n := h.Length; n > 0; {
			k := int(min(n, 1<<30))
			d, err := r.Discard(k)
			n -= int64(d)
			if err != nil {
				return causeClientClosed
			}
		}
	}
}
