package upstream

import (
	"encoding/binary"

	"github.com/gobwas/ws"
	"github.com/valyala/bytebufferpool"
)

// frameKind is what frameReader.feed completed.
type frameKind uint8

const (
	kindNone    frameKind = iota // no frame completed yet
	kindMessage                  // a whole binary message: take it with takeMessage
	kindPing                     // ping; payload in control()
	kindPong                     // pong
	kindClose                    // close; payload in control()
)

// directReadMin is the smallest remaining payload worth a read(2) straight
// into the message buffer instead of through the reader's scratch buffer
// (saves one copy of large frames, costs a syscall per call).
const directReadMin = 16 << 10

// frameReader is the resumable WebSocket frame parser of one connection
// (RFC 6455 §5.2, client side). It is fed whatever bytes arrived and keeps
// only what a frame in flight needs: up to 14 header bytes, the message
// buffer being filled, and up to 125 control payload bytes. Everything is
// checked before a buffer is sized: opcode, RSV bits, masking (a server must
// not mask), fragmentation order, control frame size, and the message limit.
//
// Owned by the goroutine that owns the connection (a reader, or the dialer
// before the first turn); never shared.
type frameReader struct {
	bufs *bufPool // static
	max  int      // static: Config.MaxFrameBytes

	hdr     [ws.MaxHeaderSize]byte // header bytes of the next frame so far
	hdrN    int
	inFrame bool      // a header was accepted; payload still due
	op      ws.OpCode // opcode of the frame in flight
	fin     bool
	need    int // payload bytes of the frame in flight still to come

	msg        *bytebufferpool.ByteBuffer // message being assembled; nil between messages
	fragmented bool                       // a non-final data frame was seen

	ctrl  [ws.MaxControlFramePayloadSize]byte
	ctrlN int
}

// headerLen is the full header size given its second byte.
func headerLen(b1 byte) int {
	n := 2
	if b1&0x80 != 0 {
		n += 4
	}
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	return n
}

// feed consumes p until it completes one frame or runs out. It returns how
// many bytes it consumed and, if a frame completed, which kind. After an
// error the reader must be reset.
func (r *frameReader) feed(p []byte) (n int, k frameKind, err error) {
	for n < len(p) {
		if !r.inFrame {
			want := 2
			if r.hdrN >= 2 {
				want = headerLen(r.hdr[1])
			}
			c := copy(r.hdr[r.hdrN:want], p[n:])
			r.hdrN += c
			n += c
			if r.hdrN < 2 {
				return n, kindNone, nil
			}
			if want == 2 && headerLen(r.hdr[1]) > 2 {
				continue
			}
			if r.hdrN < headerLen(r.hdr[1]) {
				return n, kindNone, nil
			}
			k, err = r.begin()
			if err != nil || k != kindNone {
				return n, k, err
			}
			continue
		}
		take := min(r.need, len(p)-n)
		if r.op.IsControl() {
			r.ctrlN += copy(r.ctrl[r.ctrlN:], p[n:n+take])
		} else {
			r.msg.B = append(r.msg.B, p[n:n+take]...)
		}
		n += take
		r.need -= take
		if r.need == 0 {
			if k = r.complete(); k != kindNone {
				return n, k, nil
			}
		}
	}
	return n, kindNone, nil
}

// begin parses and judges the complete header in r.hdr, sizing the message
// buffer only after every check passed.
func (r *frameReader) begin() (frameKind, error) {
	b0, b1 := r.hdr[0], r.hdr[1]
	h := ws.Header{
		Fin:    b0&0x80 != 0,
		Rsv:    (b0 & 0x70) >> 4,
		OpCode: ws.OpCode(b0 & 0x0f),
		Masked: b1&0x80 != 0,
	}
	switch l := b1 & 0x7f; l {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(r.hdr[2:4]))
	case 127:
		v := binary.BigEndian.Uint64(r.hdr[2:10])
		if v>>63 != 0 {
			return kindNone, &ProtocolError{Err: ws.ErrHeaderLengthMSB}
		}
		h.Length = int64(v)
	default:
		h.Length = int64(l)
	}
	r.hdrN = 0
	state := ws.StateClientSide
	if r.fragmented {
		state |= ws.StateFragmented
	}
	if err := ws.CheckHeader(h, state); err != nil {
		return kindNone, &ProtocolError{Err: err}
	}
	switch h.OpCode {
	case ws.OpText:
		return kindNone, ErrTextFrame
	case ws.OpBinary:
		if h.Length > int64(r.max) {
			return kindNone, ErrOversize
		}
		r.msg = r.bufs.get(int(h.Length))
	case ws.OpContinuation:
		total := int64(len(r.msg.B)) + h.Length
		if total > int64(r.max) {
			return kindNone, ErrOversize
		}
		if int64(cap(r.msg.B)) < total {
			// Move to a bigger pooled buffer (doubling, capped at the limit)
			// so fragmented streams reach a steady state without allocating.
			grown := r.bufs.get(int(min(max(total, 2*int64(cap(r.msg.B))), int64(r.max))))
			grown.B = append(grown.B, r.msg.B...)
			r.bufs.put(r.msg)
			r.msg = grown
		}
	default: // control: CheckHeader guaranteed final and ≤ 125 bytes
		r.ctrlN = 0
	}
	r.op, r.fin, r.need, r.inFrame = h.OpCode, h.Fin, int(h.Length), true
	if r.need == 0 {
		return r.complete(), nil
	}
	return kindNone, nil
}

// complete ends the frame in flight.
func (r *frameReader) complete() frameKind {
	r.inFrame = false
	switch r.op {
	case ws.OpPing:
		return kindPing
	case ws.OpPong:
		return kindPong
	case ws.OpClose:
		return kindClose
	}
	if !r.fin {
		r.fragmented = true
		return kindNone
	}
	r.fragmented = false
	return kindMessage
}

// directDst returns the unfilled rest of a large data frame's payload, to be
// read into directly, or nil when the next bytes should go through feed.
func (r *frameReader) directDst() []byte {
	if !r.inFrame || r.op.IsControl() || r.need < directReadMin {
		return nil
	}
	l := len(r.msg.B)
	return r.msg.B[l : l+r.need]
}

// advance records n bytes read into directDst's slice.
func (r *frameReader) advance(n int) frameKind {
	r.msg.B = r.msg.B[:len(r.msg.B)+n]
	r.need -= n
	if r.need == 0 {
		return r.complete()
	}
	return kindNone
}

// takeMessage hands over the completed message; the caller owns it.
func (r *frameReader) takeMessage() *bytebufferpool.ByteBuffer {
	m := r.msg
	r.msg = nil
	return m
}

// control is the payload of the last completed control frame; valid until
// the next feed.
func (r *frameReader) control() []byte { return r.ctrl[:r.ctrlN] }

// reset drops any partial state and returns the partial message buffer.
func (r *frameReader) reset() {
	if r.msg != nil {
		r.bufs.put(r.msg)
	}
	*r = frameReader{bufs: r.bufs, max: r.max}
}
