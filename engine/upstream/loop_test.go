package upstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// addHost adds the test server's host (ws:// unless useTLS).
func addHost(t *testing.T, l *Loop, ts *testServer, useTLS bool) *Host {
	t.Helper()
	h, err := l.Add(ts.hostname(), HostOptions{Insecure: !useTLS, Value: "engine-value"})
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	return h
}

// checkFrames asserts the collector received payloadN(i, size(i)) for i < n.
func checkFrames(t *testing.T, c *collector, n int, size func(i int) int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d frames", n), func() bool { return c.count() >= n })
	if got := c.count(); got != n {
		t.Fatalf("got %d frames, want %d", got, n)
	}
	for i := range n {
		if want := payloadN(i, size(i)); !bytes.Equal(c.get(i), want) {
			t.Fatalf("frame %d: got %d bytes, want %d (content differs)", i, len(c.get(i)), len(want))
		}
	}
}

func TestManySmallFrames(t *testing.T) {
	const n = 5000
	ts := newTestServer(t, false, func(sc *srvConn) {
		var batch []byte
		for i := range n {
			batch = append(batch, frameBytes(ws.OpBinary, true, payloadN(i, 10+i%50))...)
			if len(batch) > 8<<10 || i == n-1 {
				if _, err := sc.Write(batch); err != nil {
					return
				}
				batch = batch[:0]
			}
		}
		sc.drain()
	})
	c := newCollector()
	l := newTestLoop(t, testConfig(c.sink))
	h := addHost(t, l, ts, false)
	checkFrames(t, c, n, func(i int) int { return 10 + i%50 })
	if h.Frames() != n || h.Value() != "engine-value" || h.Name() != ts.hostname() {
		t.Fatalf("host: frames=%d value=%v name=%q", h.Frames(), h.Value(), h.Name())
	}
	if h.Outstanding() != 0 {
		t.Fatalf("outstanding = %d after every frame was released", h.Outstanding())
	}
}

// TestPartialFrames writes frames a few bytes at a time with pauses, so
// headers and payloads span many reads and turns; one frame is large enough
// for the direct-read path.
func TestPartialFrames(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 200, 65535, 65536, 300_000, 7}
	ts := newTestServer(t, false, func(sc *srvConn) {
		for i, sz := range sizes {
			b := frameBytes(ws.OpBinary, true, payloadN(i, sz))
			step := 3
			if sz > 1000 {
				step = 40_000
			}
			for len(b) > 0 {
				k := min(step, len(b))
				if _, err := sc.Write(b[:k]); err != nil {
					return
				}
				b = b[k:]
				time.Sleep(200 * time.Microsecond)
			}
		}
		sc.drain()
	})
	c := newCollector()
	l := newTestLoop(t, testConfig(c.sink))
	addHost(t, l, ts, false)
	checkFrames(t, c, len(sizes), func(i int) int { return sizes[i] })
}

// TestFragmentedWithPing: a message in three fragments with a ping between
// them arrives whole, and the ping is answered with the same payload.
func TestFragmentedWithPing(t *testing.T) {
	pong := make(chan []byte, 1)
	ts := newTestServer(t, false, func(sc *srvConn) {
		msg := payloadN(0, 3000)
		_ = sc.send(ws.OpBinary, false, msg[:1000])
		_ = sc.send(ws.OpPing, true, []byte("are-you-there"))
		_ = sc.send(ws.OpContinuation, false, msg[1000:2000])
		_ = sc.send(ws.OpContinuation, true, msg[2000:])
		f, err := sc.readClient()
		if err == nil && f.Header.OpCode == ws.OpPong {
			pong <- f.Payload
		}
		sc.drain()
	})
	c := newCollector()
	l := newTestLoop(t, testConfig(c.sink))
	addHost(t, l, ts, false)
	checkFrames(t, c, 1, func(int) int { return 3000 })
	select {
	case p := <-pong:
		if string(p) != "are-you-there" {
			t.Fatalf("pong payload %q", p)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no pong")
	}
}

// TestPeerCloseReconnects: a close frame is answered with a close carrying
// the same code, then the host is redialed with the engine's cursor.
func TestPeerCloseReconnects(t *testing.T) {
	closeReply := make(chan ws.StatusCode, 4)
	ts := newTestServer(t, false, func(sc *srvConn) {
		_ = sc.send(ws.OpBinary, true, payloadN(0, 5))
		_ = sc.send(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusGoingAway, "bye"))
		f, err := sc.readClient()
		if err == nil && f.Header.OpCode == ws.OpClose && len(f.Payload) >= 2 {
			closeReply <- ws.StatusCode(binary.BigEndian.Uint16(f.Payload))
		}
	})
	c := newCollector()
	cfg := testConfig(c.sink)
	var d disconnects
	cfg.OnDisconnect = d.hook
	cfg.Cursor = func(h *Host) (int64, bool) { return int64(h.Frames()), true }
	l := newTestLoop(t, cfg)
	h := addHost(t, l, ts, false)
	waitFor(t, "reconnect", func() bool { return len(ts.cursorLog()) >= 3 })
	if code := <-closeReply; code != ws.StatusGoingAway {
		t.Fatalf("close reply code %d, want %d", code, ws.StatusGoingAway)
	}
	log := ts.cursorLog()
	if log[0] != "0" || log[1] != "1" {
		t.Fatalf("cursors %q, want 0 then 1", log)
	}
	if h.Errors(ReasonClosedByPeer) == 0 {
		t.Fatal("closed_by_peer not counted")
	}
	rs, errs := d.snapshot()
	if rs[0] != ReasonClosedByPeer || !errors.Is(errs[0], ErrPeerClosed) {
		t.Fatalf("first disconnect %v %v", rs[0], errs[0])
	}
}

// TestOversize: a header announcing MaxFrameBytes+1 drops the connection
// before any payload is buffered, tells the peer 1009, and reconnects.
func TestOversize(t *testing.T) {
	codes := make(chan ws.StatusCode, 8)
	ts := newTestServer(t, false, func(sc *srvConn) {
		h := ws.Header{Fin: true, OpCode: ws.OpBinary, Length: DefaultMaxFrameBytes + 1}
		if err := ws.WriteHeader(sc, h); err != nil {
			return
		}
		_, _ = sc.Write(make([]byte, 1000))
		f, err := sc.readClient()
		if err == nil && f.Header.OpCode == ws.OpClose && len(f.Payload) >= 2 {
			codes <- ws.StatusCode(binary.BigEndian.Uint16(f.Payload))
		}
	})
	c := newCollector()
	l := newTestLoop(t, testConfig(c.sink))
	h := addHost(t, l, ts, false)
	waitFor(t, "redial after oversize", func() bool { return ts.conns.Load() >= 2 })
	if h.Errors(ReasonOversize) == 0 || c.count() != 0 {
		t.Fatalf("oversize=%d frames=%d", h.Errors(ReasonOversize), c.count())
	}
	if code := <-codes; code != ws.StatusMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
}

// firstFailure adds a host for ts to a fresh loop, waits until the host
// has counted n errors of reason, and returns the host and the error of
// its first disconnect.
func firstFailure(t *testing.T, ts *testServer, reason Reason, n uint64) (*Host, error) {
	t.Helper()
	c := newCollector()
	cfg := testConfig(c.sink)
	var d disconnects
	cfg.OnDisconnect = d.hook
	l := newTestLoop(t, cfg)
	h := addHost(t, l, ts, false)
	waitFor(t, fmt.Sprintf("%d errors of reason %v", n, reason), func() bool { return h.Errors(reason) >= n })
	_, errs := d.snapshot()
	return h, errs[0]
}

func TestTextFrameIsProtocolError(t *testing.T) {
	ts := newTestServer(t, false, func(sc *srvConn) {
		_ = sc.send(ws.OpText, true, []byte("{}"))
		sc.drain()
	})
	if _, err := firstFailure(t, ts, ReasonProtocol, 1); !errors.Is(err, ErrTextFrame) {
		t.Fatalf("error %v, want ErrTextFrame", err)
	}
}

func TestMaskedServerFrameIsProtocolError(t *testing.T) {
	ts := newTestServer(t, false, func(sc *srvConn) {
		f := ws.MaskFrame(ws.NewBinaryFrame([]byte("masked")))
		_ = ws.WriteFrame(sc, f)
		sc.drain()
	})
	_, err := firstFailure(t, ts, ReasonProtocol, 1)
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Err != ws.ErrProtocolMaskUnexpected {
		t.Fatalf("error %v, want ProtocolError(mask)", err)
	}
}

// TestTLS runs over httptest's TLS server with a tiny scratch buffer and
// turn budget, and a server that writes many frames in one TLS record then
// goes silent: frames decrypted but not yet consumed sit in crypto/tls, not
// in the socket, and must still all be delivered.
func TestTLS(t *testing.T) {
	const n = 2000
	ts := newTestServer(t, true, func(sc *srvConn) {
		var batch []byte
		for i := range n {
			batch = append(batch, frameBytes(ws.OpBinary, true, payloadN(i, 20))...)
		}
		big := frameBytes(ws.OpBinary, true, payloadN(n, 100_000))
		if _, err := sc.Write(append(batch, big...)); err != nil {
			return
		}
		sc.drain()
	})
	c := newCollector()
	cfg := testConfig(c.sink)
	cfg.TLSConfig = ts.tlsConfig()
	cfg.ReadBufferBytes = 1024
	cfg.TurnBytes = 4096
	l := newTestLoop(t, cfg)
	h := addHost(t, l, ts, true)
	checkFrames(t, c, n+1, func(i int) int {
		if i == n {
			return 100_000
		}
		return 20
	})
	if h.Errors(ReasonTLS) != 0 {
		t.Fatal("tls errors counted")
	}
}

// TestTLSUntrusted: a certificate we do not trust is reason "tls".
func TestTLSUntrusted(t *testing.T) {
	ts := newTestServer(t, true, func(sc *srvConn) { sc.drain() })
	c := newCollector()
	l := newTestLoop(t, testConfig(c.sink))
	h := addHost(t, l, ts, true)
	waitFor(t, "tls failure", func() bool { return h.Errors(ReasonTLS) > 0 })
}

// TestBackPressure: once the Sink returns false nothing more is read until
// Resume, even though the server has sent everything.
func TestBackPressure(t *testing.T) {
	const n, pauseAt = 300, 10
	ts := newTestServer(t, false, func(sc *srvConn) {
		var batch []byte
		for i := range n {
			batch = append(batch, frameBytes(ws.OpBinary, true, payloadN(i, 100))...)
		}
		_, _ = sc.Write(batch)
		sc.drain()
	})
	c := newCollector()
	c.pause = func(k int) bool { return k == pauseAt }
	l := newTestLoop(t, testConfig(c.sink))
	h := addHost(t, l, ts, false)
	waitFor(t, "pause", func() bool { return h.Paused() })
	if got := c.count(); got != pauseAt {
		t.Fatalf("%d frames delivered at pause, want %d", got, pauseAt)
	}
	// Several clock ticks and readiness reports could happen here; a paused
	// host must ignore all of them.
	time.Sleep(50 * time.Millisecond)
	if got := c.count(); got != pauseAt || !h.Paused() {
		t.Fatalf("%d frames delivered while paused (paused=%v)", got, h.Paused())
	}
	l.Resume(h)
	checkFrames(t, c, n, func(int) int { return 100 })
}

// TestResumeFromSink: a Sink that pauses and resumes at once (the engine
// freed room before returning) must not stall the host.
func TestResumeFromSink(t *testing.T) {
	const n = 200
	ts := newTestServer(t, false, func(sc *srvConn) {
		for i := range n {
			_ = sc.send(ws.OpBinary, true, payloadN(i, 30))
		}
		sc.drain()
	})
	c := newCollector()
	var l *Loop
	c.pause = func(k int) bool { return k%7 == 0 }
	sink := func(h *Host, f Frame) bool {
		keep := c.sink(h, f)
		if !keep {
			l.Resume(h)
		}
		return keep
	}
	l = newTestLoop(t, testConfig(sink))
	addHost(t, l, ts, false)
	checkFrames(t, c, n, func(int) int { return 30 })
}

// TestReconnectCursor: an error frame reaches the Sink; the engine asks for
// a reconnect with its own cursor, which the next dial carries. A host the
// engine has no cursor for dials without one.
func TestReconnectCursor(t *testing.T) {
	errFrame := []byte{0xa1, 0x62, 'o', 'p', 0x20, 0xa1, 0x65, 'e', 'r', 'r', 'o', 'r', 0x6c,
		'F', 'u', 't', 'u', 'r', 'e', 'C', 'u', 'r', 's', 'o', 'r'}
	ts := newTestServer(t, false, func(sc *srvConn) {
		_ = sc.send(ws.OpBinary, true, errFrame)
		sc.drain()
	})
	var l *Loop
	got := make(chan []byte, 4)
	sink := func(h *Host, f Frame) bool {
		b := append([]byte(nil), f.Bytes()...)
		f.Release()
		if len(got) == 0 && h.Frames() == 1 {
			l.Reconnect(h, 7)
		}
		got <- b
		return true
	}
	cfg := testConfig(sink)
	cfg.Cursor = func(h *Host) (int64, bool) { return 0, false }
	l = newTestLoop(t, cfg)
	addHost(t, l, ts, false)
	if b := <-got; !bytes.Equal(b, errFrame) {
		t.Fatalf("error frame altered: %x", b)
	}
	waitFor(t, "second dial", func() bool { return len(ts.cursorLog()) >= 2 })
	if log := ts.cursorLog(); log[0] != "" || log[1] != "7" {
		t.Fatalf("cursors %q, want none then 7", log)
	}
}

func TestRelayLoopRefused(t *testing.T) {
	ts := newTestServer(t, false, func(sc *srvConn) { sc.drain() })
	ts.header = map[string][]string{"Server": {"indigo (atproto-relay)"}}
	h, err := firstFailure(t, ts, ReasonRelayLoop, 1)
	if !errors.Is(err, ErrRelayLoop) {
		t.Fatalf("error %v, want ErrRelayLoop", err)
	}
	if h.Failures() < DefaultSlowAfterFailures || h.Connected() {
		t.Fatalf("failures=%d connected=%v: want slow schedule", h.Failures(), h.Connected())
	}
}

func TestUpgradeStatus(t *testing.T) {
	ts := newTestServer(t, false, nil)
	ts.status = 503
	h, err := firstFailure(t, ts, ReasonHandshake, 2)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 503 {
		t.Fatalf("error %v, want StatusError 503", err)
	}
	if h.Failures() < 2 {
		t.Fatalf("failures = %d", h.Failures())
	}
}

// TestSSRF: without the development flag, development hosts (ports,
// ws://, localhost, loopback literals) are refused at Add, and an address
// a public-looking name resolves to is checked by the dialer's Control hook
// before connecting: a loopback listener is never reached.
func TestSSRF(t *testing.T) {
	c := newCollector()
	cfg := testConfig(c.sink)
	cfg.AllowInsecureHosts = false
	l := newTestLoop(t, cfg)
	for _, add := range []struct {
		name string
		opts HostOptions
	}{
		{"localhost:8080", HostOptions{}},
		{"pds.example.com", HostOptions{Insecure: true}},
		{"localhost", HostOptions{}},
		{"pds-1.localhost", HostOptions{}},
		{"127.0.0.1", HostOptions{}},
	} {
		if _, err := l.Add(add.name, add.opts); !errors.Is(err, ErrInsecureNotAllowed) {
			t.Errorf("Add(%q, %+v): %v, want ErrInsecureNotAllowed", add.name, add.opts, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{Timeout: time.Second, Control: controlPublicOnly}
	if nc, err := d.Dial("tcp", ln.Addr().String()); !errors.Is(err, ErrForbiddenAddress) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("dial loopback: %v, want ErrForbiddenAddress", err)
	}
}

// TestLiveness: a peer that never answers our ping is dropped with reason
// "timeout"; a peer that answers stays up.
func TestLiveness(t *testing.T) {
	silent := newTestServer(t, false, func(sc *srvConn) {
		sc.drain() // reads our pings, never answers
	})
	pings := make(chan struct{}, 100)
	answering := newTestServer(t, false, func(sc *srvConn) {
		for {
			f, err := sc.readClient()
			if err != nil {
				return
			}
			if f.Header.OpCode == ws.OpPing {
				_ = sc.send(ws.OpPong, true, f.Payload)
				pings <- struct{}{}
			}
		}
	})
	c := newCollector()
	cfg := testConfig(c.sink)
	cfg.IdlePing = 30 * time.Millisecond
	cfg.PongTimeout = time.Second
	l := newTestLoop(t, cfg)
	hs := addHost(t, l, silent, false)
	ha := addHost(t, l, answering, false)
	waitFor(t, "timeout", func() bool { return hs.Errors(ReasonTimeout) > 0 })
	for range 3 {
		<-pings
	}
	if ha.Errors(ReasonTimeout) != 0 || answering.conns.Load() != 1 {
		t.Fatalf("answering host: timeouts=%d conns=%d", ha.Errors(ReasonTimeout), answering.conns.Load())
	}
}

// TestRemove: the connection closes and the host is forgotten.
func TestRemove(t *testing.T) {
	gone := make(chan struct{})
	ts := newTestServer(t, false, func(sc *srvConn) {
		sc.drain()
		close(gone)
	})
	c := newCollector()
	cfg := testConfig(c.sink)
	connected := make(chan struct{}, 1)
	cfg.OnConnect = func(*Host) { connected <- struct{}{} }
	l := newTestLoop(t, cfg)
	h := addHost(t, l, ts, false)
	<-connected
	waitFor(t, "armed", func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.state == stateArmed })
	l.Remove(h)
	<-gone
	waitFor(t, "unregistered", func() bool { return l.Hosts() == 0 })
	l.Remove(h) // idempotent
}

func TestCloseWithHostsInEveryState(t *testing.T) {
	ts := newTestServer(t, false, func(sc *srvConn) {
		_ = sc.send(ws.OpBinary, true, payloadN(0, 10))
		sc.drain()
	})
	c := newCollector()
	c.pause = func(int) bool { return true }
	l, err := New(testConfig(c.sink))
	if err != nil {
		t.Fatal(err)
	}
	h := addHost(t, l, ts, false)
	waitFor(t, "paused", h.Paused)
	if _, err := l.Add("unreachable.invalid", HostOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if h.Connected() || l.Hosts() != 0 {
		t.Fatal("connection survived Close")
	}
	if _, err := l.Add("x.example", HostOptions{}); !errors.Is(err, ErrLoopClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
}
