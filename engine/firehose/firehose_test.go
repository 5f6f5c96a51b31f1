package firehose

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/atrelay/relay/internal/streamtest"
	"github.com/atrelay/relay/pool"
)

func TestFanOutThreeConsumersConcurrentPublish(t *testing.T) {
	e := newEnv(t, Config{RingFrames: 64, BatchFrames: 8}, 0, 300)
	const n = 3000
	var wg sync.WaitGroup
	for range 3 {
		c := e.dial("0")
		wg.Go(func() { c.expectSeqs(1, n) })
	}
	for e.publish(1) < n {
		if rand.IntN(50) == 0 {
			e.publish(rand.IntN(40))
		}
	}
	wg.Wait()
}

func TestNoCursorIsLiveFromNow(t *testing.T) {
	e := newEnv(t, Config{}, 100, 10)
	c := e.dial("")
	streamtest.WaitFor(t, "the consumer at position 100", func() bool {
		cs := e.hub.Consumers()
		return len(cs) == 1 && cs[0].Position == 100
	})
	e.publish(5)
	c.expectSeqs(101, 105)
}

func TestCursorNewestIsLiveOnly(t *testing.T) {
	e := newEnv(t, Config{}, 50, 10)
	c := e.dial("50")
	e.publish(3)
	c.expectSeqs(51, 53)
}

// TestCursorHandoverRandomised is the critical one: consumers connect with
// random cursors while publishing runs, replay from the log, hand over to a
// small ring (which keeps evicting under them) and must see every seq after
// their cursor exactly once.
func TestCursorHandoverRandomised(t *testing.T) {
	rounds := 12
	if testing.Short() {
		rounds = 3
	}
	for round := range rounds {
		t.Run(strconv.Itoa(round), func(t *testing.T) {
			cfg := Config{
				RingFrames:        1 << rand.IntN(6),
				RingBytes:         1000 + rand.IntN(20000),
				BatchFrames:       1 + rand.IntN(16),
				ReplayBufferBytes: 64 + rand.IntN(8192),
			}
			preload := rand.IntN(400)
			e := newEnv(t, cfg, preload, rand.IntN(600))
			const total = 1500
			last := uint64(preload + total)
			var wg sync.WaitGroup
			done := make(chan struct{})
			wg.Go(func() {
				defer close(done)
				for e.publish(1+rand.IntN(8)) < last-8 {
					if rand.IntN(4) == 0 {
						for range rand.IntN(100) {
							runtimeYield()
						}
					}
				}
				e.mu.Lock()
				rest := int(last - (e.next - 1))
				e.mu.Unlock()
				e.publish(rest)
			})
			for k := range 8 {
				e.mu.Lock()
				newest := e.next - 1
				e.mu.Unlock()
				cursor := uint64(0)
				if newest > 0 {
					cursor = rand.Uint64N(newest + 1)
				}
				if k == 0 {
					cursor = newest
				}
				c := e.dial(strconv.FormatUint(cursor, 10))
				wg.Go(func() { c.expectSeqs(cursor+1, last) })
				for range rand.IntN(2000) {
					runtimeYield()
				}
			}
			<-done
			wg.Wait()
		})
	}
}

func TestFutureCursor(t *testing.T) {
	e := newEnv(t, Config{}, 10, 10)
	c := e.dial("11")
	m := c.read()
	if m.kind != kindError || string(m.data) != string(e.hub.ctrl.futureCursor) {
		t.Fatalf("want FutureCursor error frame, got kind %d %s", m.kind, trunc(m.data))
	}
	if m := c.read(); m.kind != kindClosed {
		t.Fatalf("want close after FutureCursor, got kind %d", m.kind)
	}
	e.waitConsumers(0)
	if got := e.hub.m.disconnects[causeFutureCursor].Get(); got != 1 {
		t.Fatalf("future_cursor disconnects = %d, want 1", got)
	}
}

func TestOutdatedCursor(t *testing.T) {
	e := newEnv(t, Config{}, 100, 10)
	e.log.TrimBefore(51)
	for _, cursor := range []string{"10", "0"} {
		t.Run(cursor, func(t *testing.T) {
			c := e.dial(cursor)
			m := c.read()
			if m.kind != kindInfo || string(m.data) != string(e.hub.ctrl.outdatedCursor) {
				t.Fatalf("want #info OutdatedCursor, got kind %d %s", m.kind, trunc(m.data))
			}
			c.expectSeqs(51, 100)
		})
	}
	last := e.publish(2)
	// Cursor just below the oldest retained seq loses nothing: no #info.
	c := e.dial("50")
	c.expectSeqs(51, last)
}

func TestCursorZeroUntrimmedReplaysAllWithoutInfo(t *testing.T) {
	e := newEnv(t, Config{RingFrames: 4}, 30, 10)
	c := e.dial("0")
	last := e.publish(10)
	c.expectSeqs(1, last)
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t, Config{Software: "testrelay"}, 5, 10)
	base := "http" + e.url[len("ws"):]
	cases := []struct {
		name, method, query string
		upgrade             bool
		status              int
		xrpc                string
	}{
		{"letters", "GET", "?cursor=abc", true, 400, "InvalidRequest"},
		{"negative", "GET", "?cursor=-1", true, 400, "InvalidRequest"},
		{"fraction", "GET", "?cursor=1.5", true, 400, "InvalidRequest"},
		{"plus", "GET", "?cursor=+3", true, 400, "InvalidRequest"},
		{"overflow", "GET", "?cursor=99999999999999999999", true, 400, "InvalidRequest"},
		{"post", "POST", "", true, 405, "MethodNotAllowed"},
		{"no upgrade", "GET", "?cursor=1", false, 426, "InvalidRequest"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, base+tc.query, nil)
			if tc.upgrade {
				req.Header.Set("Upgrade", "websocket")
				req.Header.Set("Connection", "Upgrade")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct{ Error, Message string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("body is not XRPC JSON: %v", err)
			}
			if resp.StatusCode != tc.status || body.Error != tc.xrpc || body.Message == "" {
				t.Fatalf("got %d %+v, want %d %s", resp.StatusCode, body, tc.status, tc.xrpc)
			}
			if got := resp.Header.Get("Server"); got != "testrelay (atproto-relay)" {
				t.Fatalf("Server header %q", got)
			}
		})
	}
	if e.consumerCount() != 0 {
		t.Fatal("a rejected request became a consumer")
	}
}

func TestUpgradeServerHeader(t *testing.T) {
	e := newEnv(t, Config{}, 0, 10)
	_, _, hs, err := ws.Dialer{OnHeader: func(key, value []byte) error {
		if string(key) == "Server" && string(value) != "relay (atproto-relay)" {
			return errors.New("bad Server header " + string(value))
		}
		return nil
	}}.Dial(t.Context(), e.url)
	if err != nil {
		t.Fatalf("dial: %v (%+v)", err, hs)
	}
}

// smallBufDialer makes a client whose socket receive buffer is fixed and
// small, so a client that stops reading stalls the server's writes after a
// known amount of data. (Far smaller buffers make loopback TCP fall back to
// zero-window probes with back-off, which only slows the test down.)
func smallBufDialer() ws.Dialer {
	return ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(128 << 10)
		}
		return c, err
	}}
}

func TestStalledConsumerReplaysThenTooSlow(t *testing.T) {
	e := newEnv(t, Config{RingFrames: 16, BatchFrames: 4, SocketSendBufferBytes: 128 << 10}, 0, 16000)
	c := e.dialWith(smallBufDialer(), "0")
	e.publish(1)
	c.expectSeqs(1, 1)

	// Stall: publish far more than the ring and the socket buffers hold.
	e.publish(199)
	cs := e.hub.Consumers()
	if len(cs) != 1 {
		t.Fatalf("stalled consumer was dropped: %d consumers", len(cs))
	}
	if floor := e.hub.floor.Load(); cs[0].Position >= floor {
		t.Fatalf("consumer at %d did not fall behind the ring (floor %d)", cs[0].Position, floor)
	}
	c.expectSeqs(2, 200)
	if e.hub.m.replayPasses.Get() == 0 {
		t.Fatal("the stalled consumer never replayed from the log")
	}
	e.publish(1)
	c.expectSeqs(201, 201)
	if m := e.hub.Consumers()[0].Mode; m != ModeLive {
		t.Fatalf("consumer mode %v after catching up, want live", m)
	}

	// Stall again, and let the log window pass the consumer.
	e.publish(200)
	e.log.TrimBefore(350)
	want := uint64(202)
	for {
		m := c.read()
		if m.kind == kindError {
			if string(m.data) != string(e.hub.ctrl.consumerTooSlow) {
				t.Fatalf("want ConsumerTooSlow, got %s", trunc(m.data))
			}
			break
		}
		if m.kind != kindEvent || m.seq != want {
			t.Fatalf("want event %d or ConsumerTooSlow, got kind %d seq %d", want, m.kind, m.seq)
		}
		want++
	}
	if want >= 350 {
		t.Fatalf("consumer got to %d before ConsumerTooSlow; it was never out of the window", want-1)
	}
	if m := c.read(); m.kind != kindClosed {
		t.Fatalf("want close after ConsumerTooSlow, got kind %d", m.kind)
	}
	e.waitConsumers(0)
	if got := e.hub.m.disconnects[causeTooSlow].Get(); got != 1 {
		t.Fatalf("too_slow disconnects = %d, want 1", got)
	}
}

func TestReconnectWithLastSeq(t *testing.T) {
	e := newEnv(t, Config{RingFrames: 32}, 20, 100)
	const last = 2000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e.publish(1+rand.IntN(5)) < last-5 {
		}
		e.mu.Lock()
		rest := int(last - (e.next - 1))
		e.mu.Unlock()
		e.publish(rest)
	}()
	c := e.dial("20")
	c.expectSeqs(21, 500)
	_ = c.conn.Close()
	c = e.dial("500")
	c.expectSeqs(501, last)
	<-done
}

func TestPublishOrder(t *testing.T) {
	e := newEnv(t, Config{}, 10, 10)
	f := e.frames.Copy(appendTestFrame(nil, 10, 1))
	if err := e.hub.Publish(10, f); !errors.Is(err, ErrSeqOrder) {
		t.Fatalf("Publish at the log's newest seq: %v, want ErrSeqOrder", err)
	}
	if f.Refs() != 1 {
		t.Fatalf("rejected Publish changed the refcount to %d", f.Refs())
	}
	f.Release()
	e.publish(1)
	f = e.frames.Copy(appendTestFrame(nil, 11, 1))
	if err := e.hub.Publish(11, f); !errors.Is(err, ErrSeqOrder) {
		t.Fatalf("duplicate Publish: %v, want ErrSeqOrder", err)
	}
	f.Release()
}

func TestRingBoundsAndRelease(t *testing.T) {
	e := newEnv(t, Config{RingFrames: 8, RingBytes: 5000}, 0, 900)
	e.publish(20)
	e.hub.mu.Lock()
	frames, bytes := e.hub.end-e.hub.first, e.hub.bytes
	e.hub.mu.Unlock()
	if bytes > 5000 || frames == 0 || frames > 8 {
		t.Fatalf("ring holds %d frames, %d bytes; bounds 8 frames, 5000 bytes", frames, bytes)
	}
	inRing := map[*pool.Frame]bool{}
	e.hub.mu.Lock()
	for i := e.hub.first; i < e.hub.end; i++ {
		inRing[e.hub.slots[i&e.hub.mask].frame] = true
	}
	e.hub.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	// Without -tags invariants a released header is reused by a later
	// frame, so only headers that are not back in the ring must be free.
	for i, f := range e.sent[:len(e.sent)-int(frames)] {
		if !inRing[f] && f.Refs() != 0 {
			t.Fatalf("evicted frame %d still has %d refs", i, f.Refs())
		}
	}
}

func TestCloseDisconnectsEveryone(t *testing.T) {
	e := newEnv(t, Config{}, 0, 10)
	var cs []*client
	for range 3 {
		cs = append(cs, e.dial("0"))
	}
	e.publish(3)
	for _, c := range cs {
		c.expectSeqs(1, 3)
	}
	e.hub.Close()
	for _, c := range cs {
		if m := c.read(); m.kind != kindClosed {
			t.Fatalf("want close, got kind %d", m.kind)
		}
	}
	if e.consumerCount() != 0 {
		t.Fatal("consumers listed after Close")
	}
	f := e.frames.Copy(appendTestFrame(nil, 4, 1))
	if err := e.hub.Publish(4, f); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	f.Release()
	resp, err := http.Get("http" + e.url[2:])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("request after Close: %d", resp.StatusCode)
	}
}

func TestPingAndPong(t *testing.T) {
	e := newEnv(t, Config{PingInterval: 5 * 1e6}, 0, 10)
	c := e.dial("")
	// The server pings an idle consumer.
	for {
		h, err := ws.ReadHeader(c.rw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(io.Discard, c.rw, h.Length); err != nil {
			t.Fatal(err)
		}
		if h.OpCode == ws.OpPing {
			break
		}
	}
	// And answers the client's ping with the same payload.
	if err := wsutil.WriteClientMessage(c.conn, ws.OpPing, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := ws.ReadFrame(c.rw)
		if err != nil {
			t.Fatal(err)
		}
		if f.Header.OpCode == ws.OpPong {
			if string(f.Payload) != "hello" {
				t.Fatalf("pong payload %q", f.Payload)
			}
			break
		}
	}
	if e.hub.m.pings.Get() == 0 {
		t.Fatal("ping counter not incremented")
	}
}

func TestClientCloseIsDetected(t *testing.T) {
	e := newEnv(t, Config{}, 0, 10)
	c := e.dial("")
	e.waitConsumers(1)
	if err := ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))); err != nil {
		t.Fatal(err)
	}
	e.waitConsumers(0)
	if got := e.hub.m.disconnects[causeClientClosed].Get(); got != 1 {
		t.Fatalf("client_closed = %d", got)
	}
}

func TestConsumersAdminView(t *testing.T) {
	e := newEnv(t, Config{}, 10, 10)
	c := e.dialWith(ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"User-Agent": {"test-agent/1"}})}, "5")
	c.expectSeqs(6, 10)
	cs := e.hub.Consumers()
	if len(cs) != 1 {
		t.Fatalf("%d consumers", len(cs))
	}
	ci := cs[0]
	if !ci.HasCursor || ci.Cursor != 5 || ci.Position != 10 || ci.Lag != 0 || ci.FramesSent != 5 ||
		ci.BytesSent == 0 || ci.RemoteAddr == "" || ci.UserAgent != "test-agent/1" || ci.ConnectedAt.IsZero() {
		t.Fatalf("unexpected info %+v", ci)
	}
	if got := e.hub.maxLag(); got != 0 {
		t.Fatalf("max lag %d, want 0", got)
	}
}

func TestLongReplaySplitsIntoPasses(t *testing.T) {
	const n = 2*replayPassFrames + 100
	e := newEnv(t, Config{}, n, 1)
	c := e.dial("0")
	last := e.publish(3)
	c.expectSeqs(1, last)
	if got := e.hub.m.replayPasses.Get(); got < 3 {
		t.Fatalf("%d replay passes for %d events, want ≥ 3", got, n)
	}
}
