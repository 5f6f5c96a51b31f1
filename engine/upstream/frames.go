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
	kindStarved                  // the message buffer cannot grow: the buffer budget is spent
)

// directReadMin is the smallest remaining payload worth a read(2) straight
// into the message buffer instead of through the reader's scratch buffer
// (saves one copy of large frames, costs a syscall per call).
const directReadMin = 16 << 10

// firstBufferBytes caps the message buffer taken when a data frame's header
// arrives. The declared length is only a claim: a 10-byte header declaring
// 5 MB must not cost 5 MB before any payload byte came. Bigger messages
// move to larger pooled buffers as their bytes arrive (grow), so a partial
// message holds at most max(64 KiB, a few times the bytes received). 64 KiB
// is a pool class and far above the p99 frame (8 KiB), so ordinary frames
// still get one exactly sized buffer.
const firstBufferBytes = 64 << 10

// frameReader is the resumable WebSocket frame parser of one connection
// (RFC 6455 §5.2, client side). It is fed whatever bytes arrived and keeps
// only what a frame in flight needs: up to 14 header bytes, the message
// buffer being filled, and up to 125 control payload bytes. Everything is
// checked before a buffer is taken: opcode, RSV bits, masking (a server must
// not mask), fragmentation order, control frame size, and the message limit.
// The buffer then grows with the bytes that actually arrive, never ahead of
// them by more than firstBufferBytes or one pool class.
//
// The message in flight is counted in the loop's buffer budget (memBudget)
// from its first buffer to its hand-over: held is what it counts. When the
// budget refuses, feed stops with kindStarved, keeping its state: a header
// whose buffer was refused is begun again at the next feed, and a message
// that could not grow takes the bytes that still fit and asks again.
//
// Owned by the goroutine that owns the connection (a reader, or the dialer
// before the first turn); never shared.
type frameReader struct {
	bufs *bufPool   // static
	max  int        // static: Config.MaxFrameBytes
	mem  *memBudget // static; nil: no budget (tests)
	host *Host      // static: whom mem queues
	held int64      // bytes the message in flight counts in mem

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

	// done counts finished units: whole messages, and control frames that
	// arrived outside a fragmented message. The reader's message clock
	// (Config.MessageTimeout) restarts when it changes, so interleaving
	// pings with fragments does not restart it.
	done uint64
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
			if room := cap(r.msg.B) - len(r.msg.B); room < take && !r.grow(take) {
				if room == 0 {
					return n, kindStarved, nil
				}
				take = room
			}
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
// buffer only after every check passed. Refused a buffer by the budget it
// returns kindStarved with the header kept, to begin again at the next feed.
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
		n := min(h.Length, firstBufferBytes)
		if !r.mem.take(r.host, askFirst, capFor(int(n))) {
			return kindStarved, nil
		}
		r.held = capFor(int(n))
		r.msg = r.bufs.get(int(n))
	case ws.OpContinuation:
		if int64(len(r.msg.B))+h.Length > int64(r.max) {
			return kindNone, ErrOversize
		}
	default: // control: CheckHeader guaranteed final and ≤ 125 bytes
		r.ctrlN = 0
	}
	r.hdrN = 0
	r.op, r.fin, r.need, r.inFrame = h.OpCode, h.Fin, int(h.Length), true
	if r.need == 0 {
		return r.complete(), nil
	}
	return kindNone, nil
}

// grow moves the message to a pooled buffer with room for at least want
// more bytes: at least twice the current capacity (so a message is copied
// O(1) times per byte), never past the end of the frame in flight, whose
// length the header already checked against the limit. Outgrowing what the
// message holds in the budget, it first reserves the buffer class of the
// whole frame (see memBudget); it reports false, changing nothing, when the
// budget refuses.
func (r *frameReader) grow(want int) bool {
	l := len(r.msg.B)
	size := min(max(l+want, 2*cap(r.msg.B)), l+r.need)
	if int64(size) > r.held {
		whole := capFor(l + r.need)
		if !r.mem.take(r.host, askGrow, whole-r.held) {
			return false
		}
		r.held = whole
	}
	grown := r.bufs.get(size)
	grown.B = append(grown.B, r.msg.B...)
	r.bufs.put(r.msg)
	r.msg = grown
	return true
}

// complete ends the frame in flight.
func (r *frameReader) complete() frameKind {
	r.inFrame = false
	switch r.op {
	case ws.OpPing, ws.OpPong, ws.OpClose:
		if r.msg == nil {
			r.done++
		}
		switch r.op {
		case ws.OpPing:
			return kindPing
		case ws.OpPong:
			return kindPong
		}
		return kindClose
	}
	if !r.fin {
		r.fragmented = true
		return kindNone
	}
	r.fragmented = false
	r.done++
	return kindMessage
}

// partial reports whether a frame or a fragmented message is in flight.
func (r *frameReader) partial() bool {
	return r.hdrN > 0 || r.inFrame || r.msg != nil
}

// directDst returns the unfilled rest of a large data frame's payload, to be
// read into directly, or nil when the next bytes should go through feed. The
// slice ends at the buffer's capacity if that comes first: the buffer grows
// as it fills rather than as the header claims. starved reports that the
// buffer is full and the budget refused to grow it.
func (r *frameReader) directDst() (dst []byte, starved bool) {
	if !r.inFrame || r.op.IsControl() || r.need < directReadMin {
		return nil, false
	}
	l := len(r.msg.B)
	if cap(r.msg.B) == l && !r.grow(1) {
		return nil, true
	}
	return r.msg.B[l : l+min(r.need, cap(r.msg.B)-l)], false
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

// takeMessage hands over the completed message; the caller owns it. Its
// bytes leave the buffer budget: a delivered message is the Sink's to bound.
func (r *frameReader) takeMessage() *bytebufferpool.ByteBuffer {
	m := r.msg
	r.msg = nil
	r.mem.give(r.held)
	r.held = 0
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
	r.mem.give(r.held)
	*r = frameReader{bufs: r.bufs, max: r.max, mem: r.mem, host: r.host}
}
