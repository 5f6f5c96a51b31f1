package upstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/gobwas/ws"
)

// newFrameReader is a reader with its own pool and the given limit.
func newFrameReader(max int) *frameReader {
	bp := newBufPool(nil)
	return &frameReader{bufs: &bp, max: max}
}

// parseAll feeds stream in chunks of chunk bytes and returns the messages
// and control kinds in order, or the first error.
func parseAll(r *frameReader, stream []byte, chunk int) (msgs [][]byte, kinds []frameKind, err error) {
	for len(stream) > 0 {
		p := stream[:min(chunk, len(stream))]
		stream = stream[len(p):]
		for len(p) > 0 {
			n, k, err := r.feed(p)
			p = p[n:]
			if err != nil {
				return msgs, kinds, err
			}
			switch k {
			case kindMessage:
				m := r.takeMessage()
				msgs = append(msgs, append([]byte(nil), m.B...))
				r.bufs.put(m)
				kinds = append(kinds, k)
			case kindNone:
			default:
				kinds = append(kinds, k)
			}
		}
	}
	return msgs, kinds, nil
}

func TestFrameReader(t *testing.T) {
	big := payloadN(1, 70_000)
	f := func(name string, stream []byte, wantMsgs [][]byte, wantKinds []frameKind, wantErr error) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			for _, chunk := range []int{1, 2, 3, 7, 14, 1000, 1 << 20} {
				r := newFrameReader(100_000)
				msgs, kinds, err := parseAll(r, stream, chunk)
				if wantErr != nil {
					if !errors.Is(err, wantErr) {
						t.Fatalf("chunk %d: err %v, want %v", chunk, err, wantErr)
					}
					r.reset()
					continue
				}
				if err != nil {
					t.Fatalf("chunk %d: %v", chunk, err)
				}
				if len(msgs) != len(wantMsgs) {
					t.Fatalf("chunk %d: %d messages, want %d", chunk, len(msgs), len(wantMsgs))
				}
				for i := range msgs {
					if !bytes.Equal(msgs[i], wantMsgs[i]) {
						t.Fatalf("chunk %d: message %d differs", chunk, i)
					}
				}
				if len(kinds) != len(wantKinds) {
					t.Fatalf("chunk %d: kinds %v, want %v", chunk, kinds, wantKinds)
				}
				for i := range kinds {
					if kinds[i] != wantKinds[i] {
						t.Fatalf("chunk %d: kinds %v, want %v", chunk, kinds, wantKinds)
					}
				}
			}
		})
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	msg := kindMessage

	f("empty binary", frameBytes(ws.OpBinary, true, nil), [][]byte{{}}, []frameKind{msg}, nil)
	f("lengths 125/126/65536", cat(
		frameBytes(ws.OpBinary, true, payloadN(0, 125)),
		frameBytes(ws.OpBinary, true, payloadN(1, 126)),
		frameBytes(ws.OpBinary, true, payloadN(2, 65536)),
	), [][]byte{payloadN(0, 125), payloadN(1, 126), payloadN(2, 65536)}, []frameKind{msg, msg, msg}, nil)
	f("fragments with controls between", cat(
		frameBytes(ws.OpBinary, false, big[:10]),
		frameBytes(ws.OpPing, true, []byte("p")),
		frameBytes(ws.OpContinuation, false, big[10:60_000]),
		frameBytes(ws.OpPong, true, nil),
		frameBytes(ws.OpContinuation, true, big[60_000:]),
		frameBytes(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusNormalClosure, "")),
	), [][]byte{big}, []frameKind{kindPing, kindPong, msg, kindClose}, nil)
	f("text", frameBytes(ws.OpText, true, []byte("x")), nil, nil, ErrTextFrame)
	f("oversize single", frameBytes(ws.OpBinary, true, make([]byte, 100_001)), nil, nil, ErrOversize)
	f("oversize fragments", cat(
		frameBytes(ws.OpBinary, false, make([]byte, 60_000)),
		frameBytes(ws.OpContinuation, true, make([]byte, 40_001)),
	), nil, nil, ErrOversize)
	f("continuation first", frameBytes(ws.OpContinuation, true, []byte("x")), nil, nil, ws.ErrProtocolContinuationUnexpected)
	f("binary inside fragments", cat(
		frameBytes(ws.OpBinary, false, []byte("a")),
		frameBytes(ws.OpBinary, true, []byte("b")),
	), nil, nil, ws.ErrProtocolContinuationExpected)
	f("reserved opcode", []byte{0x83, 0x00}, nil, nil, ws.ErrProtocolOpCodeReserved)
	f("rsv bits", []byte{0xc2, 0x00}, nil, nil, ws.ErrProtocolNonZeroRsv)
	f("masked", ws.MustCompileFrame(ws.MaskFrame(ws.NewBinaryFrame([]byte("m")))), nil, nil, ws.ErrProtocolMaskUnexpected)
	f("control too long", append([]byte{0x89, 126, 0, 126}, make([]byte, 126)...), nil, nil, ws.ErrProtocolControlPayloadOverflow)
	f("control fragmented", []byte{0x09, 0x00}, nil, nil, ws.ErrProtocolControlNotFinal)
	long := []byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint64(long[2:], 1<<63)
	f("length msb", long, nil, nil, ws.ErrHeaderLengthMSB)
}

// TestProcessZeroAlloc is the per-frame hot path: parse, pooled buffer
// counted in the buffer budget, Sink, release. At steady state it must not
// allocate, and every byte counted is given back at delivery.
func TestProcessZeroAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	l := newTestLoop(t, Config{Sink: func(h *Host, f Frame) bool { f.Release(); return true }, Readers: 1, MaxConcurrentDials: 1})
	h := &Host{loop: l, name: "alloc.test"}
	c := &conn{fr: frameReader{bufs: &l.bufs, max: l.cfg.MaxFrameBytes, mem: l.mem, host: h}}
	r := &reader{l: l}
	var stream []byte
	for i := range 64 {
		stream = append(stream, frameBytes(ws.OpBinary, true, payloadN(i, 50+i*37))...)
	}
	stream = append(stream, frameBytes(ws.OpBinary, false, payloadN(0, 3000))...)
	stream = append(stream, frameBytes(ws.OpContinuation, true, payloadN(1, 9000))...)
	run := func() {
		used, stop, _, err := r.process(h, c, stream)
		if err != nil || stop != outNone || used != len(stream) {
			t.Fatalf("process: used %d/%d stop %v err %v", used, len(stream), stop, err)
		}
	}
	for range 10 {
		run()
	}
	if a := testing.AllocsPerRun(200, run); a != 0 {
		t.Fatalf("%.2f allocs per 66 frames, want 0", a)
	}
	if h.Frames() == 0 || h.Outstanding() != 0 {
		t.Fatalf("frames %d outstanding %d", h.Frames(), h.Outstanding())
	}
	if n := l.mem.inUse(); n != 0 {
		t.Fatalf("buffer budget holds %d bytes after every frame was delivered", n)
	}
}

// FuzzFrameReader: any bytes, any chunking — no panic, no message over the
// limit, and after an error reset leaves nothing held.
func FuzzFrameReader(f *testing.F) {
	f.Add(frameBytes(ws.OpBinary, true, []byte("hello")), uint8(0))
	f.Add(append(frameBytes(ws.OpBinary, false, []byte("ab")), frameBytes(ws.OpContinuation, true, []byte("cd"))...), uint8(2))
	f.Add(frameBytes(ws.OpPing, true, []byte("p")), uint8(1))
	f.Add(frameBytes(ws.OpBinary, true, make([]byte, 300)), uint8(13))
	f.Add([]byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}, uint8(3))
	f.Add([]byte{0x82, 127, 0, 0, 0, 0, 0, 0x10, 0, 0}, uint8(200))
	f.Add([]byte{0x81, 0x01, 'x'}, uint8(0))
	f.Add([]byte{0x88, 0x02, 0x03, 0xe8}, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		const limit = 4096
		r := newFrameReader(limit)
		msgs, _, err := parseAll(r, data, int(chunk)+1)
		for _, m := range msgs {
			if len(m) > limit {
				t.Fatalf("message of %d bytes passed a %d limit", len(m), limit)
			}
		}
		if err == nil && r.msg != nil && r.msg.Len() > limit {
			t.Fatalf("partial message of %d bytes", r.msg.Len())
		}
		r.reset()
		if r.msg != nil || r.inFrame || r.hdrN != 0 || r.fragmented {
			t.Fatal("reset left state behind")
		}
	})
}
