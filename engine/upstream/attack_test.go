package upstream

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrelay/relay/internal/testutil"
	"github.com/atrelay/relay/pool"
	"github.com/gobwas/ws"
)

// Each test here is one attack by a hostile host (issue 12), through real
// sockets on loopback, asserting what the attack was after: our heap, other
// hosts' latency, our reconnect rate.

// heapWatch samples HeapInuse while an attack runs, so a spike that the GC
// frees before the end still counts.
type heapWatch struct {
	base, baseAlloc uint64
	peak            atomic.Uint64
	stop, done      chan struct{}
}

func watchHeap() *heapWatch {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w := &heapWatch{base: ms.HeapInuse, baseAlloc: ms.TotalAlloc, stop: make(chan struct{}), done: make(chan struct{})}
	w.peak.Store(ms.HeapInuse)
	go func() {
		defer close(w.done)
		var ms runtime.MemStats
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > w.peak.Load() {
				w.peak.Store(ms.HeapInuse)
			}
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// finish stops sampling and returns the peak HeapInuse growth and the bytes
// allocated meanwhile (garbage included).
func (w *heapWatch) finish() (peakGrowth, allocated uint64) {
	close(w.stop)
	<-w.done
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return w.peak.Load() - min(w.base, w.peak.Load()), ms.TotalAlloc - w.baseAlloc
}

// rawServer accepts TCP connections on loopback and runs serve on each; the
// connections are closed at cleanup.
func rawServer(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	return testutil.TCPServer(t, func(c net.Conn) { serve(c, bufio.NewReader(c)) }).String()
}

// readRequest consumes the upgrade request.
func readRequest(br *bufio.Reader) error {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if line == "\r\n" {
			return nil
		}
	}
}

// TestHandshakeEndlessHeader: a host answers the upgrade with 101 and then
// one header line that never ends (64 MiB here, endless in the attack).
// The dial must fail on the size bound, long before the handshake timeout,
// and the heap must not grow with the line.
func TestHandshakeEndlessHeader(t *testing.T) {
	const stream = 64 << 20
	var sent atomic.Int64
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if readRequest(br) != nil {
			return
		}
		if _, err := io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Endless: "); err != nil {
			return
		}
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		for sent.Load() < stream {
			n, err := c.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
		_, _ = io.Copy(io.Discard, c) // hold the connection open
	})
	var d disconnects
	cfg := testConfig(func(h *Host, f Frame) bool { f.Release(); return true })
	cfg.OnDisconnect = d.hook
	cfg.HandshakeTimeout = 20 * time.Second
	cfg.BackoffMin, cfg.BackoffMax = time.Minute, time.Minute // one dial
	l := newTestLoop(t, cfg)

	w := watchHeap()
	h, err := l.Add(addr, HostOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the dial to fail", func() bool { rs, _ := d.snapshot(); return len(rs) > 0 })
	growth, allocated := w.finish()
	t.Logf("server wrote %d KiB before we hung up; heap peak +%d KiB, allocated %d KiB",
		sent.Load()>>10, growth>>10, allocated>>10)
	if growth > 8<<20 || allocated > 8<<20 {
		t.Errorf("heap peak +%d KiB, allocated %d KiB during the handshake: want both under 8 MiB", growth>>10, allocated>>10)
	}
	rs, errs := d.snapshot()
	if rs[0] != ReasonHandshakeTooLarge || !errors.Is(errs[0], ErrHandshakeTooLarge) {
		t.Fatalf("dial failed with %v (%v), want handshake_too_large", rs[0], errs[0])
	}
	if h.Errors(ReasonHandshakeTooLarge) != 1 || h.Connected() {
		t.Fatalf("errors=%d connected=%v", h.Errors(ReasonHandshakeTooLarge), h.Connected())
	}
}

// TestHandshakeTooManyHeaders: 101 followed by thousands of short headers.
func TestHandshakeTooManyHeaders(t *testing.T) {
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if readRequest(br) != nil {
			return
		}
		b := []byte("HTTP/1.1 101 Switching Protocols\r\n")
		for i := range 5000 {
			b = append(b, "X-H: "...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, "\r\n"...)
		}
		if _, err := c.Write(b); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c)
	})
	var d disconnects
	cfg := testConfig(func(h *Host, f Frame) bool { f.Release(); return true })
	cfg.OnDisconnect = d.hook
	cfg.MaxHandshakeBytes = 64 << 10 // the count must bite, not the size
	cfg.BackoffMin, cfg.BackoffMax = time.Minute, time.Minute
	l := newTestLoop(t, cfg)
	if _, err := l.Add(addr, HostOptions{Insecure: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the dial to fail", func() bool { rs, _ := d.snapshot(); return len(rs) > 0 })
	if rs, errs := d.snapshot(); rs[0] != ReasonHandshakeTooLarge {
		t.Fatalf("dial failed with %v (%v), want handshake_too_large", rs[0], errs[0])
	}
}

// trickleServer: every connection declares one binary message of declared
// bytes, then sends one payload byte every 20 ms, forever.
func trickleServer(t *testing.T, declared int64, trickled *atomic.Int64) *testServer {
	return newTestServer(t, false, func(sc *srvConn) {
		var w sliceWriter
		if err := ws.WriteHeader(&w, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: declared}); err != nil {
			panic(err)
		}
		if _, err := sc.Write(w.b); err != nil {
			return
		}
		for {
			time.Sleep(20 * time.Millisecond)
			if _, err := sc.Write([]byte{0}); err != nil {
				return
			}
			trickled.Add(1)
		}
	})
}

// TestMessageTimeoutTrickle: hosts each declare a 4.99 MB message and
// trickle it a byte at a time. They must not get a message-sized buffer
// (only what arrived, about), and must be dropped once the message is older
// than MessageTimeout although bytes keep coming.
func TestMessageTimeoutTrickle(t *testing.T) {
	const hosts = 6
	var trickled atomic.Int64
	ts := trickleServer(t, 4_990_000, &trickled)
	cfg := testConfig(func(h *Host, f Frame) bool { f.Release(); return true })
	cfg.MessageTimeout = 700 * time.Millisecond
	cfg.BackoffMin, cfg.BackoffMax = time.Minute, time.Minute
	l := newTestLoop(t, cfg)

	w := watchHeap()
	var hs []*Host
	for range hosts {
		hs = append(hs, addHost(t, l, ts, false))
	}
	// Every host has its header in and is trickling: its message is in
	// flight, well within MessageTimeout.
	waitFor(t, "trickling", func() bool { return ts.conns.Load() == hosts && trickled.Load() >= 3*hosts })
	growth, _ := w.finish()
	var big uint64
	for c := range pool.NumClasses {
		if st := l.bufs.p.Stats(c); st.Size > firstBufferBytes {
			big += st.Gets
		}
	}
	t.Logf("heap peak +%d KiB with %d hosts holding a partial 4.99 MB message", growth>>10, hosts)
	if big != 0 || growth > 8<<20 {
		t.Fatalf("%d buffers over 64 KiB taken, heap peak +%d KiB: a declared length must not size the buffer", big, growth>>10)
	}
	for i, h := range hs {
		waitFor(t, "message timeout of host "+strconv.Itoa(i), func() bool { return h.Errors(ReasonMessageTimeout) == 1 })
	}
	for _, h := range hs {
		if h.Connected() || h.Errors(ReasonTimeout) != 0 || h.Failures() != 1 {
			t.Fatalf("connected=%v timeouts=%d failures=%d: want dropped for the message timeout and backing off",
				h.Connected(), h.Errors(ReasonTimeout), h.Failures())
		}
	}
}

// TestMessageTimeoutNotTrippedByBusyStream: a stream whose reads nearly
// always end mid-message (the next message's first half arrives with the
// previous one's second half), for several message timeouts, is never
// dropped: the clock restarts with each message.
func TestMessageTimeoutNotTrippedByBusyStream(t *testing.T) {
	const n = 80 // ~0.7 s of stream, nearly three message timeouts
	size := func(i int) int { return 20_000 + i*100 }
	ts := newTestServer(t, false, func(sc *srvConn) {
		// Each write is the second half of one message and the first half
		// of the next, so no read ends between messages.
		var stream []byte
		var cuts []int
		for i := range n {
			b := frameBytes(ws.OpBinary, true, payloadN(i, size(i)))
			cuts = append(cuts, len(stream)+len(b)/2)
			stream = append(stream, b...)
		}
		cuts = append(cuts, len(stream))
		from := 0
		for _, to := range cuts {
			if _, err := sc.Write(stream[from:to]); err != nil {
				return
			}
			from = to
			time.Sleep(8 * time.Millisecond)
		}
		sc.drain()
	})
	c := newCollector()
	cfg := testConfig(c.sink)
	cfg.MessageTimeout = 250 * time.Millisecond
	l := newTestLoop(t, cfg)
	h := addHost(t, l, ts, false)
	checkFrames(t, c, n, size)
	if h.Errors(ReasonMessageTimeout) != 0 {
		t.Fatalf("%d message timeouts on a healthy stream", h.Errors(ReasonMessageTimeout))
	}
}

// TestMessageTimeoutPausedDoesNotCount: time the Sink keeps a host paused
// is not charged to the host's message clock.
func TestMessageTimeoutPausedDoesNotCount(t *testing.T) {
	resumed := make(chan struct{})
	ts := newTestServer(t, false, func(sc *srvConn) {
		b := frameBytes(ws.OpBinary, true, payloadN(0, 200_000))
		_, _ = sc.Write(b[:1000]) // the first message spans reads
		time.Sleep(50 * time.Millisecond)
		_, _ = sc.Write(b[1000:])
		<-resumed
		_ = sc.send(ws.OpBinary, true, payloadN(1, 10))
		sc.drain()
	})
	c := newCollector()
	c.pause = func(k int) bool { return k == 1 }
	cfg := testConfig(c.sink)
	cfg.MessageTimeout = 300 * time.Millisecond
	l := newTestLoop(t, cfg)
	h := addHost(t, l, ts, false)
	waitFor(t, "pause", h.Paused)
	time.Sleep(3 * cfg.MessageTimeout)
	l.Resume(h)
	time.Sleep(3 * cfg.MessageTimeout) // armed and idle: the clock looks
	close(resumed)
	checkFrames(t, c, 2, func(i int) int { return []int{200_000, 10}[i] })
	if h.Errors(ReasonMessageTimeout) != 0 {
		t.Fatal("message timeout charged for time spent paused")
	}
}

// TestPingFlood: with one reader, a host floods pings and never reads its
// socket, while another host streams timestamped messages. Pongs must never
// block the reader (the other host's messages keep arriving promptly) and
// the flooder must be dropped for its ping rate.
func TestPingFlood(t *testing.T) {
	flood := newTestServer(t, false, func(sc *srvConn) {
		if tc, ok := sc.Conn.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096) // fill up fast on the old code
		}
		ping := frameBytes(ws.OpPing, true, bytes.Repeat([]byte("p"), 125))
		batch := bytes.Repeat(ping, 500)
		for {
			if _, err := sc.Write(batch); err != nil {
				return
			}
		}
	})
	const n = 150
	normal := newTestServer(t, false, func(sc *srvConn) {
		var p [8]byte
		for range n {
			binary.BigEndian.PutUint64(p[:], uint64(time.Now().UnixNano()))
			if err := sc.send(ws.OpBinary, true, p[:]); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		sc.drain()
	})
	var got, maxDelay atomic.Int64
	cfg := testConfig(func(h *Host, f Frame) bool {
		if h.Value() == "normal" {
			d := time.Now().UnixNano() - int64(binary.BigEndian.Uint64(f.Bytes()))
			if d > maxDelay.Load() {
				maxDelay.Store(d)
			}
			got.Add(1)
		}
		f.Release()
		return true
	})
	cfg.Readers = 1
	cfg.BackoffMin, cfg.BackoffMax = 100*time.Millisecond, 400*time.Millisecond
	l := newTestLoop(t, cfg)
	fh, err := l.Add(flood.hostname(), HostOptions{Insecure: true, Value: "flood"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Add(normal.hostname(), HostOptions{Insecure: true, Value: "normal"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the normal host's messages", func() bool { return got.Load() == n })
	if d := time.Duration(maxDelay.Load()); d > time.Second {
		t.Fatalf("the normal host's messages waited up to %v behind the ping flood", d)
	}
	waitFor(t, "the flooder dropped", func() bool { return fh.Errors(ReasonPingFlood) > 0 })
	t.Logf("max delay %v; flooder dropped %d times", time.Duration(maxDelay.Load()), fh.Errors(ReasonPingFlood))
}

// TestPingsWithinRateAnswered: a host pinging at a modest rate gets a pong
// for each ping and keeps its connection.
func TestPingsWithinRateAnswered(t *testing.T) {
	const pings = 6
	pongs := make(chan string, pings)
	ts := newTestServer(t, false, func(sc *srvConn) {
		for i := range pings {
			if err := sc.send(ws.OpPing, true, []byte("ping-"+strconv.Itoa(i))); err != nil {
				return
			}
			f, err := sc.readClient()
			if err != nil {
				return
			}
			if f.Header.OpCode == ws.OpPong {
				pongs <- string(f.Payload)
			}
			time.Sleep(120 * time.Millisecond)
		}
		sc.drain()
	})
	l := newTestLoop(t, testConfig(func(h *Host, f Frame) bool { f.Release(); return true }))
	h := addHost(t, l, ts, false)
	for i := range pings {
		select {
		case p := <-pongs:
			if p != "ping-"+strconv.Itoa(i) {
				t.Fatalf("pong %d payload %q", i, p)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no pong %d", i)
		}
	}
	if h.Errors(ReasonPingFlood) != 0 || h.Errors(ReasonClosedByPeer) != 0 {
		t.Fatalf("dropped: flood=%d closed=%d", h.Errors(ReasonPingFlood), h.Errors(ReasonClosedByPeer))
	}
}

// futureCursorFrame is {op:-1}{error:"FutureCursor"}.
var futureCursorFrame = []byte("\xa1\x62op\x20\xa1\x65error\x6cFutureCursor")

// TestErrorFrameBacksOff: a host answers every connection with a
// FutureCursor error frame and closes. Whether the engine asks for a
// Reconnect (as it does for FutureCursor) or not, redials must back off
// exponentially instead of looping, and Reconnect's cursor must be kept.
func TestErrorFrameBacksOff(t *testing.T) {
	for _, reconnect := range []bool{true, false} {
		t.Run("reconnect="+strconv.FormatBool(reconnect), func(t *testing.T) {
			ts := newTestServer(t, false, func(sc *srvConn) {
				_ = sc.send(ws.OpBinary, true, futureCursorFrame)
			})
			var l *Loop
			var errFrames atomic.Int64
			cfg := testConfig(func(h *Host, f Frame) bool {
				if bytes.Equal(f.Bytes(), futureCursorFrame) {
					errFrames.Add(1)
					if reconnect {
						l.Reconnect(h, -1)
					}
				}
				f.Release()
				return true
			})
			cfg.Cursor = func(*Host) (int64, bool) { return 100, true }
			cfg.BackoffMin, cfg.BackoffMax = 50*time.Millisecond, 10*time.Second
			l = newTestLoop(t, cfg)
			h := addHost(t, l, ts, false)
			time.Sleep(2 * time.Second)
			conns := ts.conns.Load()
			t.Logf("%d connections in 2 s, %d error frames, failures %d", conns, errFrames.Load(), h.Failures())
			// 50 ms doubling with jitter: about 6 redials in 2 s; the
			// loop this replaces made hundreds.
			if conns > 15 || conns < 2 {
				t.Fatalf("%d connections in 2 s: want a handful (exponential backoff)", conns)
			}
			if h.Errors(ReasonErrorFrame) < uint64(conns)-1 || h.Failures() < 3 {
				t.Fatalf("error_frame errors %d, failures %d", h.Errors(ReasonErrorFrame), h.Failures())
			}
			cursors := ts.cursorLog()
			if cursors[0] != "100" {
				t.Fatalf("first dial cursor %q", cursors[0])
			}
			for i, c := range cursors[1:] {
				if want := map[bool]string{true: "", false: "100"}[reconnect]; c != want {
					t.Fatalf("dial %d cursor %q, want %q", i+1, c, want)
				}
			}
		})
	}
}

// TestLogAllowed: one line per host per LogInterval, the rest counted.
func TestLogAllowed(t *testing.T) {
	cfg := testConfig(func(h *Host, f Frame) bool { f.Release(); return true })
	cfg.LogInterval = 200 * time.Millisecond
	l := newTestLoop(t, cfg)
	a := &Host{loop: l, name: "a.test"}
	b := &Host{loop: l, name: "b.test"}
	if ok, _ := a.LogAllowed(); !ok {
		t.Fatal("first line refused")
	}
	for range 1000 {
		if ok, _ := a.LogAllowed(); ok {
			t.Fatal("second line within the interval allowed")
		}
	}
	if ok, _ := b.LogAllowed(); !ok {
		t.Fatal("another host's line refused")
	}
	if got := l.m.logSuppressed.Get(); got != 1000 {
		t.Fatalf("suppressed counter %d, want 1000", got)
	}
	time.Sleep(cfg.LogInterval + 50*time.Millisecond)
	ok, suppressed := a.LogAllowed()
	if !ok || suppressed != 1000 {
		t.Fatalf("after the interval: ok=%v suppressed=%d", ok, suppressed)
	}
}

func TestLogString(t *testing.T) {
	long := bytes.Repeat([]byte("é"), 200) // 2 bytes each
	for _, c := range []struct {
		in, want string
	}{
		{"FutureCursor", "FutureCursor"},
		{"", ""},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{string(long), string(long[:128]) + "…"},
		{string(bytes.Repeat([]byte("a"), 127)) + "é", string(bytes.Repeat([]byte("a"), 127)) + "…"},
	} {
		if got := LogString([]byte(c.in)); got != c.want {
			t.Errorf("LogString(%.20q…) = %q, want %q", c.in, got, c.want)
		}
	}
	huge := bytes.Repeat([]byte("x"), 5_000_000)
	if got := LogString(huge); len(got) != 128+len("…") {
		t.Errorf("5 MB string logged as %d bytes", len(got))
	}
	err := remoteError{&StatusError{Status: 503}}
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 503 {
		t.Error("remoteError hides the wrapped error")
	}
}

func TestIsErrorFrame(t *testing.T) {
	for _, c := range []struct {
		name  string
		frame string
		want  bool
	}{
		// The header rules are event.PeekHeader's (tested there); these
		// check that only its op -1 verdict makes an error frame.
		{"canonical error", string(futureCursorFrame), true},
		{"op before t", "\xa2\x62op\x20\x61t\x67#commit\xa0", true},
		{"commit", "\xa2\x61t\x67#commit\x62op\x01\xa0", false},
		{"op -2", "\xa1\x62op\x21\xa0", false},
		// The dispatch scan refuses a non-text "t": not an error frame
		// for the loop either, so the two never disagree.
		{"t not text", "\xa2\x61t\x01\x62op\x20\xa0", false},
		{"empty", "", false},
	} {
		if got := isErrorFrame([]byte(c.frame)); got != c.want {
			t.Errorf("%s: isErrorFrame = %v, want %v", c.name, got, c.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { isErrorFrame(futureCursorFrame) }); n != 0 {
		t.Errorf("isErrorFrame allocates %v times", n)
	}
}

// chunkRW serves a fixed input in reads of at most step bytes.
type chunkRW struct {
	in   []byte
	step int
}

func (c *chunkRW) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.step)], c.in)
	c.in = c.in[n:]
	return n, nil
}

func (c *chunkRW) Write(p []byte) (int, error) { return len(p), nil }

func TestHeadLimiter(t *testing.T) {
	head := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
	frames := string(bytes.Repeat([]byte("\n\r\n"), 10_000)) // after the head: not counted
	for _, c := range []struct {
		name     string
		in       string
		maxBytes int
		maxLines int
		wantErr  bool
	}{
		{"fits, frames follow", head + frames, len(head), 3, false},
		{"one byte too many", head, len(head) - 1, 3, true},
		{"one line too many", head, 1024, 2, true},
		{"bare LF lines", "HTTP/1.1 101 OK\nA: b\n\n" + frames, 22, 2, false},
		{"stray CR is content", "HTTP/1.1 101 OK\r\n\r\r\n", 1024, 1, true},
		{"endless line", "HTTP/1.1 101 OK\r\nX: " + string(bytes.Repeat([]byte("a"), 1<<20)), 16 << 10, 100, true},
	} {
		for _, step := range []int{1, 2, 3, 4096} {
			l := &headLimiter{rw: &chunkRW{in: []byte(c.in), step: step}, maxBytes: c.maxBytes, maxLines: c.maxLines}
			var err error
			read := 0
			buf := make([]byte, 4096)
			for err == nil {
				var n int
				n, err = l.Read(buf)
				read += n
			}
			if tooLarge := errors.Is(err, ErrHandshakeTooLarge); tooLarge != c.wantErr {
				t.Errorf("%s (reads of %d): err %v, want too large %v", c.name, step, err, c.wantErr)
			}
			if c.wantErr && read > c.maxBytes {
				t.Errorf("%s (reads of %d): read %d bytes past a %d-byte bound", c.name, step, read, c.maxBytes)
			}
		}
	}
}

// TestGrowAsBytesArrive: a big declared frame starts with a small buffer,
// grows as its payload arrives, and comes out whole through both the
// scratch and the direct-read paths.
func TestGrowAsBytesArrive(t *testing.T) {
	l := newTestLoop(t, Config{Sink: func(h *Host, f Frame) bool { f.Release(); return true }, Readers: 1, MaxConcurrentDials: 1})
	fr := frameReader{bufs: &l.bufs, max: l.cfg.MaxFrameBytes}
	payload := payloadN(7, 3_000_000)
	frame := frameBytes(ws.OpBinary, true, payload)
	n, k, err := fr.feed(frame[:100])
	if err != nil || n != 100 || k != kindNone {
		t.Fatalf("feed: %d %v %v", n, k, err)
	}
	if c := cap(fr.msg.B); c > firstBufferBytes {
		t.Fatalf("a declared 3 MB frame took a %d-byte buffer after 100 bytes", c)
	}
	off := 100
	for off < len(frame) {
		if dst, _ := fr.directDst(); dst != nil {
			if len(fr.msg.B)+len(dst) > cap(fr.msg.B) {
				t.Fatal("direct read slice beyond the buffer")
			}
			c := copy(dst, frame[off:min(len(frame), off+len(dst), off+100_000)])
			off += c
			k = fr.advance(c)
		} else {
			n, k, err = fr.feed(frame[off:min(len(frame), off+1000)])
			if err != nil {
				t.Fatal(err)
			}
			off += n
		}
		if held, got := cap(fr.msg.B), len(fr.msg.B); k == kindNone && held > max(firstBufferBytes, 8*got) {
			t.Fatalf("%d bytes received, %d held", got, held)
		}
	}
	if k != kindMessage {
		t.Fatalf("last kind %v", k)
	}
	m := fr.takeMessage()
	if !bytes.Equal(m.B, payload) {
		t.Fatal("payload differs")
	}
	l.bufs.put(m)
}
