package splitter

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/atrelay/relay/engine/atproto/dagcbor"
	"github.com/atrelay/relay/engine/atproto/event"
)

// fakeUpstream is a WebSocket server whose every connection runs script,
// given the connection's number (from 1) and the cursor it asked for; the
// connection closes when script returns.
type fakeUpstream struct {
	srv   *httptest.Server
	conns atomic.Int32
}

func startFake(t *testing.T, script func(n int, cursor string, conn net.Conn)) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		script(int(f.conns.Add(1)), r.URL.Query().Get("cursor"), conn)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeUpstream) url() string { return "ws://" + strings.TrimPrefix(f.srv.URL, "http://") }

// hold keeps a connection open until the client goes away, answering
// nothing.
func hold(conn net.Conn) { _, _ = io.Copy(io.Discard, conn) }

// send writes each frame as one binary message.
func send(conn net.Conn, frames ...[]byte) {
	for _, f := range frames {
		if err := wsutil.WriteServerBinary(conn, f); err != nil {
			return
		}
	}
}

func identities(seqs ...uint64) [][]byte {
	out := make([][]byte, len(seqs))
	for i, s := range seqs {
		out[i] = identityFrame(s)
	}
	return out
}

// legacyFrame is a #handle frame (a type relays no longer emit) with a seq.
func legacyFrame(seq uint64) []byte {
	b := append([]byte(nil), "\xa2\x61t\x67#handle\x62op\x01"...)
	b = dagcbor.AppendMapHeader(b, 1)
	b = dagcbor.AppendText(b, "seq")
	return dagcbor.AppendUint(b, seq)
}

// TestUpstreamReplaysOldSeqs follows an upstream that ignores the cursor
// and replays its log from the start on every connection, with an #info
// OutdatedCursor, a legacy frame, a frame without a seq and garbage mixed
// in: the splitter stores each seq once, in order, counts the backwards
// episode once and every dropped frame by reason.
func TestUpstreamReplaysOldSeqs(t *testing.T) {
	f := startFake(t, func(n int, cursor string, conn net.Conn) {
		info := event.AppendInfo(nil, &event.Info{Name: []byte("OutdatedCursor")})
		switch n {
		case 1:
			// To a backfill from cursor 0 this only says the window no
			// longer starts at 1: not a loss, not counted.
			send(conn, info)
			send(conn, identities(span(1, 10)...)...)
			return // hang up: the splitter reconnects with cursor 10
		default:
			send(conn, info) // a real loss: counted
			send(conn, identities(span(1, 10)...)...)
			send(conn, legacyFrame(11), identityFrame(0), []byte{0xff, 0x00})
			send(conn, identities(span(11, 15)...)...)
			hold(conn)
		}
	})
	n := startNode(t, fastConfig(f.url()), 1<<20)
	n.waitSeq(15)
	c := dial(t, n.url(), 0)
	if seqs := seqsOf(t, c.waitFrames(t, 15)); !slices.Equal(seqs, span(1, 15)) {
		t.Fatalf("consumer seqs %v", seqs)
	}
	for name, want := range map[string]uint64{
		`relay_splitter_upstream_resets_total{signal="seq_backwards"}`:            1,
		`relay_splitter_frames_dropped_total{reason="seq_not_above_newest"}`:      10,
		`relay_splitter_frames_dropped_total{reason="unknown_type"}`:              1,
		`relay_splitter_frames_dropped_total{reason="no_seq"}`:                    1,
		`relay_splitter_frames_dropped_total{reason="malformed"}`:                 1,
		`relay_splitter_upstream_outdated_cursor_total`:                           1,
		`relay_splitter_frames_total`:                                             15,
		`relay_splitter_upstream_disconnects_total{reason="read"}`:                1, // the first hang-up
		`relay_splitter_upstream_disconnects_total{reason="protocol"}`:            0,
		`relay_splitter_upstream_disconnects_total{reason="handshake"}`:           0,
		`relay_splitter_upstream_disconnects_total{reason="timeout"}`:             0,
		`relay_splitter_upstream_disconnects_total{reason="closed"}`:              0,
		`relay_splitter_upstream_disconnects_total{reason="error_frame"}`:         0,
		`relay_splitter_upstream_disconnects_total{reason="oversize"}`:            0,
		`relay_splitter_upstream_disconnects_total{reason="handshake_too_large"}`: 0,
	} {
		if got := counter(t, n.set, name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	if n.sp.Status().Behind {
		t.Error("still behind after following")
	}
}

// wsHeader encodes a server frame header claiming length bytes.
func wsHeader(op ws.OpCode, length int, masked bool) []byte {
	var b strings.Builder
	_ = ws.WriteHeader(&b, ws.Header{Fin: true, OpCode: op, Length: int64(length), Masked: masked})
	return []byte(b.String())
}

// TestHostileUpstream runs one misbehaving upstream per case and checks
// the connection is dropped for the expected reason, nothing is stored,
// and the splitter keeps running (and redialing).
func TestHostileUpstream(t *testing.T) {
	cases := []struct {
		name   string
		reason string
		cfg    func(*Config)
		script func(conn net.Conn)
	}{
		{"oversize message", "oversize", func(c *Config) { c.MaxFrameBytes = 64 << 10 }, func(conn net.Conn) {
			_, _ = conn.Write(wsHeader(ws.OpBinary, 100<<10, false))
			hold(conn)
		}},
		{"oversize across fragments", "oversize", func(c *Config) { c.MaxFrameBytes = 64 << 10 }, func(conn net.Conn) {
			for i := range 3 {
				h := ws.Header{OpCode: ws.OpContinuation, Length: 30 << 10}
				if i == 0 {
					h.OpCode = ws.OpBinary
				}
				_ = ws.WriteHeader(conn, h)
				_, _ = conn.Write(make([]byte, 30<<10))
			}
			hold(conn)
		}},
		{"cut mid-message", "read", nil, func(conn net.Conn) {
			frame := identityFrame(1)
			_, _ = conn.Write(wsHeader(ws.OpBinary, len(frame), false))
			_, _ = conn.Write(frame[:len(frame)/2])
		}},
		{"message trickled", "timeout", func(c *Config) { c.MessageTimeout = 100 * time.Millisecond }, func(conn net.Conn) {
			frame := identityFrame(1)
			_, _ = conn.Write(wsHeader(ws.OpBinary, len(frame), false))
			for _, b := range frame[:len(frame)-1] {
				if _, err := conn.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			hold(conn)
		}},
		{"silent, ignores pings", "timeout", func(c *Config) { c.IdlePing, c.PongTimeout = 50*time.Millisecond, 50*time.Millisecond },
			func(conn net.Conn) { hold(conn) }},
		{"text frame", "protocol", nil, func(conn net.Conn) {
			_ = wsutil.WriteServerText(conn, []byte("hello"))
			hold(conn)
		}},
		{"masked server frame", "protocol", nil, func(conn net.Conn) {
			_, _ = conn.Write(append(wsHeader(ws.OpBinary, 4, true), 1, 2, 3, 4))
			hold(conn)
		}},
		{"error frame", "error_frame", nil, func(conn net.Conn) {
			send(conn, event.AppendError(nil, &event.ErrorFrame{Error: []byte(strings.Repeat("x", 10000))}))
			hold(conn)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, func(_ int, _ string, conn net.Conn) { tc.script(conn) })
			cfg := fastConfig(f.url())
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			n := startNode(t, cfg, 1<<20)
			name := `relay_splitter_upstream_disconnects_total{reason="` + tc.reason + `"}`
			waitFor(t, "a disconnect for "+tc.reason, func() bool { return counter(t, n.set, name) >= 2 })
			if got := n.st.NewestSeq(); got != 0 {
				t.Errorf("stored up to seq %d from a hostile upstream", got)
			}
			if err := n.sp.Err(); err != nil {
				t.Errorf("splitter stopped: %v", err)
			}
		})
	}
}

// TestHostileHandshake checks the upgrade response is bounded: an endless
// header line, too many headers, and a non-101 answer.
func TestHostileHandshake(t *testing.T) {
	cases := []struct {
		name, reason string
		response     func(w io.Writer)
	}{
		{"endless header line", "handshake_too_large", func(w io.Writer) {
			_, _ = io.WriteString(w, "HTTP/1.1 101 Switching Protocols\r\nX-Long: ")
			chunk := strings.Repeat("a", 4096)
			for range 1024 {
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
			}
		}},
		{"too many headers", "handshake_too_large", func(w io.Writer) {
			_, _ = io.WriteString(w, "HTTP/1.1 101 Switching Protocols\r\n")
			for i := range 10000 {
				if _, err := fmt.Fprintf(w, "X-H%d: v\r\n", i); err != nil {
					return
				}
			}
		}},
		{"not an upgrade", "handshake", func(w io.Writer) {
			_, _ = io.WriteString(w, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = ln.Close() })
			var sent atomic.Int64
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						// Read the request head, then answer.
						buf := make([]byte, 4096)
						_, _ = c.Read(buf)
						cw := &countingWriter{w: c, n: &sent}
						tc.response(cw)
						time.Sleep(50 * time.Millisecond)
					}()
				}
			}()
			n := startNode(t, fastConfig("ws://"+ln.Addr().String()), 1<<20)
			name := `relay_splitter_upstream_disconnects_total{reason="` + tc.reason + `"}`
			waitFor(t, "a failed handshake", func() bool { return counter(t, n.set, name) >= 2 })
			if n.sp.Status().Connected {
				t.Error("connected to a server that never upgraded")
			}
		})
	}
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	k, err := c.w.Write(p)
	c.n.Add(int64(k))
	return k, err
}

// TestUpstreamPings checks an idle upstream that answers pings stays
// connected, and that its own pings are answered.
func TestUpstreamPings(t *testing.T) {
	var pings, pongs atomic.Int32
	f := startFake(t, func(_ int, _ string, conn net.Conn) {
		go func() {
			for range 3 {
				_ = wsutil.WriteServerMessage(conn, ws.OpPing, []byte("hi"))
				time.Sleep(10 * time.Millisecond)
			}
		}()
		for {
			fr, err := ws.ReadFrame(conn)
			if err != nil {
				return
			}
			if fr.Header.Masked {
				ws.Cipher(fr.Payload, fr.Header.Mask, 0)
			}
			switch fr.Header.OpCode {
			case ws.OpPing:
				pings.Add(1)
				_ = wsutil.WriteServerMessage(conn, ws.OpPong, fr.Payload)
			case ws.OpPong:
				if string(fr.Payload) == "hi" {
					pongs.Add(1)
				}
			}
		}
	})
	cfg := fastConfig(f.url())
	cfg.IdlePing, cfg.PongTimeout = 20*time.Millisecond, time.Minute
	n := startNode(t, cfg, 1<<20)
	waitFor(t, "pings and pongs", func() bool { return pings.Load() >= 5 && pongs.Load() == 3 })
	if d := counter(t, n.set, `relay_splitter_upstream_dials_total`); d != 1 {
		t.Errorf("%d dials: the idle connection was dropped", d)
	}
}

// TestReadPathAllocs measures the whole path of an upstream frame (read,
// peek, queue, AppendAt, Publish, eviction from a small hub ring back to
// the pool) at steady state and checks it allocates nothing per frame:
// what remains is per batch (Pebble's commit), far fewer than frames.
func TestReadPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops buffers on purpose")
	}
	const frames = 20000
	encode := func(from uint64) []byte {
		var wire []byte
		for _, f := range identities(span(from, from+frames-1)...) {
			wire = append(append(wire, wsHeader(ws.OpBinary, len(f), false)...), f...)
		}
		return wire
	}
	warm, measured := encode(1), encode(frames+1)
	start := make(chan struct{})
	f := startFake(t, func(_ int, _ string, conn net.Conn) {
		_, _ = conn.Write(warm)
		<-start
		_, _ = conn.Write(measured)
		hold(conn)
	})
	cfg := fastConfig(f.url())
	// A bounded backlog, as at the live rate: the warm-up leaves the pool
	// with as many buffers as the queue and the ring hold.
	cfg.QueueFrames = 512
	n := startNode(t, cfg, 64<<10)
	n.waitSeq(frames)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	close(start)
	for n.st.NewestSeq() < 2*frames {
		time.Sleep(time.Millisecond)
	}
	runtime.ReadMemStats(&after)
	perFrame := float64(after.Mallocs-before.Mallocs) / frames
	t.Logf("%.3f allocations per frame, %d batches in all", perFrame, counter(t, n.set, `relay_splitter_batches_total`))
	if perFrame > 0.2 {
		t.Errorf("%.2f allocations per frame on the read path", perFrame)
	}
}
