package fanout

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/atrelay/relay/engine/wsframe"
	"github.com/atrelay/relay/internal/streamtest"
	"github.com/atrelay/relay/pool"
)

// reason is a test set of disconnect reasons.
type reason uint8

const (
	reasonNone reason = iota
	reasonWrite
	reasonSlow
)

// recConn is a net.Conn that records what is written to it; after fail is
// set every write fails.
type recConn struct {
	net.Conn // nil: only the methods below are used
	mu       sync.Mutex
	buf      bytes.Buffer
	fail     bool
	closed   bool
}

func (r *recConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return 0, errors.New("write failed")
	}
	return r.buf.Write(p)
}

func (r *recConn) SetWriteDeadline(time.Time) error { return nil }

func (r *recConn) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return nil
}

func (r *recConn) RemoteAddr() net.Addr { return &net.TCPAddr{} }

// frames parses what was written into (opcode, payload) pairs.
func (r *recConn) frames(t *testing.T) []ws.Frame {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ws.Frame
	rd := bytes.NewReader(r.buf.Bytes())
	for rd.Len() > 0 {
		f, err := ws.ReadFrame(rd)
		if err != nil {
			t.Fatalf("parsing the written bytes: %v", err)
		}
		out = append(out, f)
	}
	return out
}

func testEndpoint() *Endpoint {
	return &Endpoint{BatchFrames: 4, WriteTimeout: time.Second, PingInterval: time.Hour, ReplayBufferBytes: 64}
}

func newTestConn(t *testing.T, conn net.Conn) *Conn[reason] {
	t.Helper()
	return NewConn[reason](testEndpoint(), conn, context.Background())
}

var testFrames = pool.NewFrames(pool.NewBuffers(nil, "fanout_test"))

// fill puts frames holding payloads into c's batch, one reference each,
// and returns the frames (with a reference kept by the test).
func fill(c *Conn[reason], payloads ...string) []*pool.Frame {
	var fs []*pool.Frame
	for i, p := range payloads {
		f := testFrames.Copy([]byte(p))
		c.Batch()[i] = f.Retain()
		fs = append(fs, f)
	}
	return fs
}

// wantFrames checks the opcodes and payloads written.
func wantFrames(t *testing.T, got []ws.Frame, want ...ws.Frame) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d frames written, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Header.OpCode != want[i].Header.OpCode || !bytes.Equal(got[i].Payload, want[i].Payload) {
			t.Fatalf("frame %d: op %v %q, want op %v %q", i, got[i].Header.OpCode, got[i].Payload,
				want[i].Header.OpCode, want[i].Payload)
		}
	}
}

// TestWriteBatchReleases: a batch goes out as one message per frame, and
// every frame's reference is released and its slot cleared, also when the
// write fails.
func TestWriteBatchReleases(t *testing.T) {
	for _, fail := range []bool{false, true} {
		rc := &recConn{fail: fail}
		c := newTestConn(t, rc)
		fs := fill(c, "one", "two", string(bytes.Repeat([]byte{'x'}, 200)))
		n, err := c.WriteBatch(wsframe.OpText, len(fs))
		if fail != (err != nil) {
			t.Fatalf("fail=%v: err %v", fail, err)
		}
		for i, f := range fs {
			if r := f.Refs(); r != 1 {
				t.Fatalf("fail=%v: frame %d holds %d references after WriteBatch, want the test's 1", fail, i, r)
			}
			if c.Batch()[i] != nil {
				t.Fatalf("fail=%v: slot %d not cleared", fail, i)
			}
			f.Release()
		}
		if fail {
			continue
		}
		if want := 2 + 3 + 2 + 3 + 4 + 200; n != want {
			t.Fatalf("WriteBatch returned %d bytes, want %d", n, want)
		}
		wantFrames(t, rc.frames(t), ws.NewTextFrame([]byte("one")), ws.NewTextFrame([]byte("two")),
			ws.NewTextFrame(bytes.Repeat([]byte{'x'}, 200)))
	}
}

// TestReplayKeepsOrder: a pong and a message written during a replay pass
// go out behind the messages already buffered.
func TestReplayKeepsOrder(t *testing.T) {
	rc := &recConn{}
	c := newTestConn(t, rc)
	c.BeginReplay()
	if _, err := c.Buffer(wsframe.OpBinary, []byte("r1")); err != nil {
		t.Fatal(err)
	}
	c.queuePong([]byte("p"))
	if err := c.Pong(); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(wsframe.OpBinary, []byte("info")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Buffer(wsframe.OpBinary, []byte("r2")); err != nil {
		t.Fatal(err)
	}
	if err := c.EndReplay(); err != nil {
		t.Fatal(err)
	}
	if err := c.Pong(); err != nil { // no ping pending: writes nothing
		t.Fatal(err)
	}
	wantFrames(t, rc.frames(t), ws.NewBinaryFrame([]byte("r1")), ws.NewPongFrame([]byte("p")),
		ws.NewBinaryFrame([]byte("info")), ws.NewBinaryFrame([]byte("r2")))
}

// TestStopAbortsBlockedWrite: Stop from another goroutine ends a write the
// client never reads, the write reports the stop reason, and later writes
// are refused while Goodbye's still go out.
func TestStopAbortsBlockedWrite(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := newTestConn(t, a)
	fs := fill(c, "stuck")
	done := make(chan error)
	go func() {
		_, err := c.WriteBatch(wsframe.OpBinary, 1)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond) // let the write block
	c.Stop(reasonSlow, "too slow")
	if err := <-done; err == nil {
		t.Fatal("the blocked write succeeded")
	}
	if why := c.Failed(reasonWrite); why != reasonSlow {
		t.Fatalf("Failed = %d, want the stop reason %d", why, reasonSlow)
	}
	c.Stop(reasonWrite, "later")
	if why, text, stopped := c.Reason(); !stopped || why != reasonSlow || text != "too slow" {
		t.Fatalf("Reason = %d %q %v: the first Stop must win", why, text, stopped)
	}
	if c.Context().Err() == nil {
		t.Fatal("Stop did not cancel the context")
	}
	if err := c.WriteMessage(wsframe.OpBinary, []byte("x")); !errors.Is(err, ErrStopped) {
		t.Fatalf("WriteMessage after Stop: %v, want ErrStopped", err)
	}
	fs[0].Release()

	got := make(chan []byte)
	go func() {
		buf := make([]byte, 64)
		_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := io.ReadAtLeast(b, buf, 2+4+2+2+3)
		got <- buf[:n]
	}()
	if !c.Goodbye([]byte("bye!"), 1008, "hi!") {
		t.Fatal("Goodbye did not write its last message after Stop")
	}
	want := []byte{0x82, 4, 'b', 'y', 'e', '!', 0x88, 5, 0x03, 0xf0, 'h', 'i', '!'}
	if g := <-got; !bytes.Equal(g, want) {
		t.Fatalf("goodbye bytes % x, want % x", g, want)
	}
	c.Close(reasonNone)
}

// TestWaitPingsWhenIdle: a tick after an interval without messages pings;
// one after a message only clears the mark. Wake and Stop end a Wait.
func TestWaitPingsWhenIdle(t *testing.T) {
	rc := &recConn{}
	ep := testEndpoint()
	ep.PingInterval = 5 * time.Millisecond
	c := NewConn[reason](ep, rc, context.Background())
	if err := c.WriteMessage(wsframe.OpText, []byte("m")); err != nil {
		t.Fatal(err)
	}
	if pinged, err := c.Wait(); pinged || err != nil {
		t.Fatalf("first tick after a message: pinged %v, err %v", pinged, err)
	}
	if pinged, err := c.Wait(); !pinged || err != nil {
		t.Fatalf("idle tick: pinged %v, err %v", pinged, err)
	}
	wantFrames(t, rc.frames(t), ws.NewTextFrame([]byte("m")), ws.NewPingFrame(nil))

	ep.PingInterval = time.Hour
	c = NewConn[reason](ep, rc, context.Background())
	c.Wake()
	if pinged, err := c.Wait(); pinged || err != nil {
		t.Fatalf("woken: pinged %v, err %v", pinged, err)
	}
	go c.Stop(reasonSlow, "")
	if _, err := c.Wait(); !errors.Is(err, ErrStopped) {
		t.Fatalf("stopped: %v, want ErrStopped", err)
	}
	c.Close(reasonNone)
	if !rc.closed {
		t.Fatal("Close did not close the socket")
	}
}

// TestWriteBatchAllocs: writing a batch of shared frames allocates nothing.
func TestWriteBatchAllocs(t *testing.T) {
	if streamtest.Race || streamtest.Invariants {
		t.Skip("the race detector and the pool's invariants build allocate")
	}
	c := newTestConn(t, discardConn{})
	f := testFrames.Copy(bytes.Repeat([]byte{'x'}, 2000))
	defer f.Release()
	allocs := testing.AllocsPerRun(1000, func() {
		for i := range c.Batch() {
			c.Batch()[i] = f.Retain()
		}
		if _, err := c.WriteBatch(wsframe.OpBinary, len(c.Batch())); err != nil {
			t.Fatal(err)
		}
		c.BeginReplay()
		_, _ = c.Buffer(wsframe.OpBinary, f.Bytes())
		_ = c.EndReplay()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch, want 0", allocs)
	}
}

// discardConn is a net.Conn whose writes succeed and go nowhere.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// TestReadClient: the reader answers pings through the writer, skips data
// with Discard and tells a clean end from a protocol error.
func TestReadClient(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	f := func(name string, in []byte, want error, wantPing string) {
		t.Run(name, func(t *testing.T) {
			c := newTestConn(t, &recConn{})
			got := c.ReadClient(bufio.NewReader(bytes.NewReader(in)), Discard)
			if got != want {
				t.Fatalf("ReadClient = %v, want %v", got, want)
			}
			if c.pongWanted.Load() != (wantPing != "") || string(c.ping[:c.pingLen]) != wantPing {
				t.Fatalf("ping %q (pong wanted %v), want %q", c.ping[:c.pingLen], c.pongWanted.Load(), wantPing)
			}
		})
	}
	f("eof", nil, ErrClientClosed, "")
	f("close", clientFrame(ws.OpClose, true, []byte{3, 232}), ErrClientClosed, "")
	f("text then ping then close", cat(
		clientFrame(ws.OpText, true, []byte("ignored")),
		clientFrame(ws.OpBinary, false, bytes.Repeat([]byte{1}, 70000)),
		clientFrame(ws.OpContinuation, true, []byte("end")),
		clientFrame(ws.OpPing, true, []byte("p1")),
		clientFrame(ws.OpPong, true, nil),
		clientFrame(ws.OpClose, true, nil)), ErrClientClosed, "p1")
	f("unmasked", []byte{0x82, 0x01, 0x00}, ErrProtocol, "")
	f("stray continuation", clientFrame(ws.OpContinuation, true, []byte("x")), ErrProtocol, "")
	f("reserved opcode", clientFrame(ws.OpCode(0x3), true, nil), ErrProtocol, "")
	f("control too long", []byte{0x89, 0xfe, 0x00, 0x80, 0, 0, 0, 0}, ErrProtocol, "")
	f("64-bit length msb", []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, ErrProtocol, "")
	f("truncated payload", clientFrame(ws.OpBinary, true, []byte("abcdef"))[:8], ErrClientClosed, "")
}

// TestReadClientData: data headers reach the data function, fragments
// included, and its error ends the loop.
func TestReadClientData(t *testing.T) {
	stop := errors.New("enough")
	var ops []ws.OpCode
	in := bytes.Join([][]byte{
		clientFrame(ws.OpText, false, []byte("ab")),
		clientFrame(ws.OpContinuation, true, []byte("c")),
		clientFrame(ws.OpBinary, true, []byte("d")),
		clientFrame(ws.OpText, true, []byte("never read")),
	}, nil)
	c := newTestConn(t, &recConn{})
	got := c.ReadClient(bufio.NewReader(bytes.NewReader(in)), func(h ws.Header, r *bufio.Reader) error {
		ops = append(ops, h.OpCode)
		if err := Discard(h, r); err != nil {
			return err
		}
		if h.OpCode == ws.OpBinary {
			return stop
		}
		return nil
	})
	if got != stop {
		t.Fatalf("ReadClient = %v, want the data function's error", got)
	}
	if want := []ws.OpCode{ws.OpText, ws.OpContinuation, ws.OpBinary}; !equalOps(ops, want) {
		t.Fatalf("data saw %v, want %v", ops, want)
	}
}

func equalOps(a, b []ws.OpCode) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// clientFrame returns a masked client frame.
func clientFrame(op ws.OpCode, fin bool, payload []byte) []byte {
	var buf bytes.Buffer
	fr := ws.MaskFrame(ws.NewFrame(op, fin, append([]byte(nil), payload...)))
	_ = ws.WriteFrame(&buf, fr)
	return buf.Bytes()
}

func FuzzReadClient(f *testing.F) {
	f.Add([]byte{})
	f.Add(clientFrame(ws.OpPing, true, []byte("hi")))
	f.Add(clientFrame(ws.OpBinary, true, []byte("data")))
	f.Add(clientFrame(ws.OpClose, true, []byte{3, 232, 'b', 'y', 'e'}))
	f.Add([]byte{0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4})
	f.Add([]byte{0x89, 0xfe, 0x00, 0x80})
	f.Fuzz(func(t *testing.T, in []byte) {
		c := NewConn[reason](testEndpoint(), &recConn{}, context.Background())
		got := c.ReadClient(bufio.NewReader(bytes.NewReader(in)), Discard)
		if got != ErrClientClosed && got != ErrProtocol {
			t.Fatalf("ReadClient = %v", got)
		}
		if c.pingLen > 125 {
			t.Fatalf("ping payload of %d bytes", c.pingLen)
		}
	})
}
