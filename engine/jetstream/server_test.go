package jetstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/klauspost/compress/zstd"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/internal/streamtest"
)

const (
	alice = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	bob   = "did:plc:44ybard66vv44zksje25o7dz"
	carol = "did:plc:z72i7hdynmk6r22z27h6tvur"
)

// baseMS is a commit time for test events (2026-11-25T22:17:57.806Z).
const baseMS = 1_764_109_077_806

const waitMsg = 5 * time.Second

// waitLive waits until n subscribers are in the live set.
func (ts *testServer) waitLive(t testing.TB, n int) {
	t.Helper()
	streamtest.WaitFor(t, fmt.Sprintf("%d live subscribers", n), func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return len(ts.live) == n
	})
}

// appendAll logs frames at ms and wakes the pump.
func (ts *testServer) appendAll(t testing.TB, ms int64, frames ...[]byte) {
	t.Helper()
	for _, f := range frames {
		ts.src.Append(t, ms, f)
	}
	ts.Notify()
}

// expectKeys reads len(want) events and checks their keys in order.
func (c *client) expectKeys(want ...string) []jsEvent {
	c.t.Helper()
	var got []jsEvent
	for i, w := range want {
		e := c.event(waitMsg)
		if e.key() != w {
			c.t.Fatalf("event %d: got %s, want %s", i, e.key(), w)
		}
		got = append(got, e)
	}
	return got
}

func post(did, rkey string) []byte {
	return commitFrame(did, "3lbwsi4hzvk2a", testOp{"create", "app.bsky.feed.post/" + rkey, postRecord("post " + rkey)})
}

func like(did, rkey string) []byte {
	return commitFrame(did, "3lbwsi4hzvk2a", testOp{"create", "app.bsky.feed.like/" + rkey, postRecord("like")})
}

func follow(did, rkey string) []byte {
	return commitFrame(did, "3lbwsi4hzvk2a", testOp{"create", "app.bsky.graph.follow/" + rkey, postRecord("follow")})
}

// TestLiveFilters: three live subscribers with different filters over
// real sockets each get exactly their events, and each event's JSON is
// encoded once however many subscribers want it.
func TestLiveFilters(t *testing.T) {
	checkNoLeak(t)
	ts := startServer(t, newFakeSource(), Config{})
	all := ts.dial(t, "")
	feed := ts.dial(t, "wantedCollections=app.bsky.feed.*")
	aliceFollows := ts.dial(t, "wantedCollections=app.bsky.graph.follow&wantedDids="+alice)
	two := ts.dial(t, "wantedDids="+alice+"&wantedDids="+carol+"&wantedCollections=app.bsky.feed.like&wantedCollections=app.bsky.graph.follow")
	ts.waitLive(t, 4)

	ts.appendAll(t, baseMS,
		post(alice, "p1"), like(bob, "l1"), follow(alice, "f1"), follow(bob, "f2"),
		identityFrame(bob, "bob.test"), accountFrame(alice, false, "deactivated"),
		commitFrame(carol, "r", testOp{"create", "app.bsky.feed.like/l2", postRecord("x")}, testOp{"delete", "app.bsky.feed.post/p0", nil}))

	all.expectKeys(
		"commit "+alice+" app.bsky.feed.post/p1 create", "commit "+bob+" app.bsky.feed.like/l1 create",
		"commit "+alice+" app.bsky.graph.follow/f1 create", "commit "+bob+" app.bsky.graph.follow/f2 create",
		"identity "+bob+" 5", "account "+alice+" 6",
		"commit "+carol+" app.bsky.feed.like/l2 create", "commit "+carol+" app.bsky.feed.post/p0 delete")
	feed.expectKeys(
		"commit "+alice+" app.bsky.feed.post/p1 create", "commit "+bob+" app.bsky.feed.like/l1 create",
		"identity "+bob+" 5", "account "+alice+" 6",
		"commit "+carol+" app.bsky.feed.like/l2 create", "commit "+carol+" app.bsky.feed.post/p0 delete")
	aliceFollows.expectKeys("commit "+alice+" app.bsky.graph.follow/f1 create", "account "+alice+" 6")
	two.expectKeys("commit "+alice+" app.bsky.graph.follow/f1 create", "account "+alice+" 6",
		"commit "+carol+" app.bsky.feed.like/l2 create")
	for _, c := range []*client{all, feed, aliceFollows, two} {
		c.expectNothing(50 * time.Millisecond)
	}
	// 8 Jetstream events, every one wanted by "all": 8 encodings for 20
	// deliveries.
	if n := ts.m.encoded.Get(); n != 8 {
		t.Errorf("%d JSON encodings, want 8 (one per event)", n)
	}
	if n := ts.m.sentLive.Get(); n != 8+6+2+3 {
		t.Errorf("%d messages sent, want 19", n)
	}
}

// TestOptionsUpdate: an options_update message replaces the filters of a
// live subscriber mid-stream; a refused one closes it with 1008.
func TestOptionsUpdate(t *testing.T) {
	checkNoLeak(t)
	ts := startServer(t, newFakeSource(), Config{})
	c := ts.dial(t, "wantedCollections=app.bsky.feed.post")
	ts.waitLive(t, 1)
	ts.appendAll(t, baseMS, post(alice, "p1"), follow(alice, "f1"))
	c.expectKeys("commit " + alice + " app.bsky.feed.post/p1 create")

	c.sendText(`{"type":"options_update","payload":{"wantedCollections":["app.bsky.graph.*"],"wantedDids":["` + bob + `"]}}`)
	streamtest.WaitFor(t, "the update", func() bool { return ts.m.optionsUpds.Get() == 1 })
	ts.appendAll(t, baseMS, post(bob, "p2"), follow(alice, "f2"), follow(bob, "f3"))
	c.expectKeys("commit " + bob + " app.bsky.graph.follow/f3 create")

	// Unknown message types are ignored; so are binary messages.
	c.sendText(`{"type":"something_else","payload":{}}`)
	if err := writeClientBinary(c, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	// maxMessageSizeBytes from an update: a big record is skipped.
	c.sendText(`{"type":"options_update","payload":{"maxMessageSizeBytes":600}}`)
	streamtest.WaitFor(t, "the second update", func() bool { return ts.m.optionsUpds.Get() == 2 })
	big := commitFrame(alice, "r", testOp{"create", "app.bsky.feed.post/big", postRecord(strings.Repeat("x", 1000))})
	ts.appendAll(t, baseMS, big, post(carol, "small"))
	c.expectKeys("commit " + carol + " app.bsky.feed.post/small create")

	c.sendText(`{"type":"options_update","payload":{"wantedDids":["not a did"]}}`)
	if code := c.closeCode(waitMsg); code != closePolicy {
		t.Fatalf("close code %d, want %d", code, closePolicy)
	}
	streamtest.WaitFor(t, "the disconnect", func() bool { return ts.m.disconnects[causeBadOptions].Get() == 1 })
}

func writeClientBinary(c *client, b []byte) error {
	return ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewBinaryFrame(b)))
}

// TestRequireHello: with requireHello nothing is sent before the first
// options_update; without one in HelloTimeout the connection is closed.
func TestRequireHello(t *testing.T) {
	checkNoLeak(t)
	ts := startServer(t, newFakeSource(), Config{HelloTimeout: 300 * time.Millisecond})
	c := ts.dial(t, "requireHello=true")
	ts.appendAll(t, baseMS, post(alice, "before"))
	c.expectNothing(100 * time.Millisecond)
	c.sendText(`{"type":"options_update","payload":{"wantedCollections":["app.bsky.feed.like"]}}`)
	ts.waitLive(t, 1)
	ts.appendAll(t, baseMS, post(alice, "p"), like(alice, "l"))
	c.expectKeys("commit " + alice + " app.bsky.feed.like/l create")

	silent := ts.dial(t, "requireHello=true")
	if code := silent.closeCode(waitMsg); code != closePolicy {
		t.Fatalf("close code %d, want %d", code, closePolicy)
	}
	streamtest.WaitFor(t, "the hello timeout", func() bool { return ts.m.disconnects[causeHelloTimeout].Get() == 1 })
}

// TestCompressionRoundTrip: compress=true (and Socket-Encoding: zstd) sends
// binary zstd frames made with the v1 dictionary; decoded with the real
// dictionary file they equal the JSON a plain subscriber gets, byte for
// byte, and each names dictionary 1612007021.
func TestCompressionRoundTrip(t *testing.T) {
	checkNoLeak(t)
	if !bytes.Equal(DictionaryV1(), readDict(t)) {
		t.Fatal("embedded dictionary differs from internal/testdata/jetstream/legacy_subscribe.zdict")
	}
	ts := startServer(t, newFakeSource(), Config{})
	plain := ts.dial(t, "")
	comp := ts.dial(t, "compress=true")
	hdr := ts.dialHeader(t, "", http.Header{"Socket-Encoding": {"zstd"}})
	ts.waitLive(t, 3)
	var frames [][]byte
	for i := range 50 {
		frames = append(frames, post(alice, "p"+strconv.Itoa(i)), identityFrame(bob, "bob.test"))
	}
	ts.appendAll(t, baseMS, frames...)
	dec, err := zstd.NewReader(nil, zstd.WithDecoderDicts(readDict(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	var plainBytes, compBytes int
	for i := range 100 {
		want, op := plain.next(waitMsg)
		if op != ws.OpText {
			t.Fatalf("plain message %d has opcode %v", i, op)
		}
		for _, c := range []*client{comp, hdr} {
			z, op := c.next(waitMsg)
			if op != ws.OpBinary {
				t.Fatalf("compressed message %d has opcode %v", i, op)
			}
			var h zstd.Header
			if err := h.Decode(z); err != nil || h.DictionaryID != DictionaryV1ID {
				t.Fatalf("frame header: dict %d, err %v", h.DictionaryID, err)
			}
			got, err := dec.DecodeAll(z, nil)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("message %d: decoded %s, want %s", i, got, want)
			}
			compBytes += len(z)
		}
		plainBytes += 2 * len(want)
	}
	if compBytes >= plainBytes {
		t.Fatalf("compressed %d bytes ≥ plain %d", compBytes, plainBytes)
	}
	// One compression per event, shared by both compressing subscribers.
	if n := ts.m.compressed.Get(); n != 100 {
		t.Errorf("%d compressions, want 100", n)
	}
}

func (ts *testServer) dialHeader(t testing.TB, query string, h http.Header) *client {
	t.Helper()
	return ts.dialWith(t, ws.Dialer{Header: ws.HandshakeHeaderHTTP(h)}, query)
}

// TestBadRequests: refused options get HTTP 400 before the upgrade, as from
// Jetstream; a full server 503 with a Retry-After, as the firehose's.
func TestBadRequests(t *testing.T) {
	checkNoLeak(t)
	ts := startServer(t, newFakeSource(), Config{MaxSubscribers: 1})
	var retryAfter string
	get := func(query string, upgrade bool) int {
		req, _ := http.NewRequest(http.MethodGet, ts.hs.URL+"/subscribe?"+query, nil)
		if upgrade {
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		retryAfter = resp.Header.Get("Retry-After")
		return resp.StatusCode
	}
	f := func(query string, want int) {
		t.Helper()
		if got := get(query, true); got != want {
			t.Errorf("%q: HTTP %d, want %d", query, got, want)
		}
	}
	f("wantedCollections=bad%20nsid", http.StatusBadRequest)
	f("wantedDids=nope", http.StatusBadRequest)
	f("cursor=yesterday", http.StatusBadRequest)
	if got := get("", false); got != http.StatusUpgradeRequired {
		t.Errorf("no upgrade: HTTP %d", got)
	}
	ts.dial(t, "")
	streamtest.WaitFor(t, "one subscriber", func() bool { ts.mu.Lock(); defer ts.mu.Unlock(); return len(ts.all) == 1 })
	f("", http.StatusServiceUnavailable)
	if retryAfter == "" {
		t.Error("a full server's 503 carries no Retry-After")
	}
}

// TestHostileMessages: a client message over MaxClientMessageBytes closes
// that connection with 1009, a message that is not JSON with 1008, and the
// server keeps serving everyone else.
func TestHostileMessages(t *testing.T) {
	checkNoLeak(t)
	ts := startServer(t, newFakeSource(), Config{MaxClientMessageBytes: 4096})
	good := ts.dial(t, "")
	big := ts.dial(t, "")
	junk := ts.dial(t, "")
	ts.waitLive(t, 3)
	// The big message is fragmented, so no single frame is over the limit.
	w := make([]byte, 3000)
	if err := ws.WriteFrame(big.conn, ws.MaskFrame(ws.NewFrame(ws.OpText, false, w))); err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteFrame(big.conn, ws.MaskFrame(ws.NewFrame(ws.OpContinuation, true, w))); err != nil {
		t.Fatal(err)
	}
	if code := big.closeCode(waitMsg); code != closeTooBig {
		t.Fatalf("big: close code %d, want %d", code, closeTooBig)
	}
	junk.sendText("not json")
	if code := junk.closeCode(waitMsg); code != closePolicy {
		t.Fatalf("junk: close code %d, want %d", code, closePolicy)
	}
	// An unmasked client frame breaks RFC 6455: dropped without ceremony.
	rude := ts.dial(t, "")
	ts.waitLive(t, 2)
	if err := ws.WriteFrame(rude.conn, ws.NewTextFrame([]byte(`{"type":"options_update","payload":{}}`))); err != nil {
		t.Fatal(err)
	}
	streamtest.WaitFor(t, "the protocol error", func() bool { return ts.m.disconnects[causeProtocol].Get() == 1 })
	ts.waitLive(t, 1)
	ts.appendAll(t, baseMS, post(alice, "p"))
	good.expectKeys("commit " + alice + " app.bsky.feed.post/p create")
}

// TestFanoutPerEventFilters drives the pump by hand (no sockets) over
// commits of several ops and an identity event: each subscriber gets
// exactly the ops its DID and collection filters want, in order, including
// one whose time cursor falls between two ops of a commit and one that
// wants no DID of the stream.
func TestFanoutPerEventFilters(t *testing.T) {
	s, err := New(newFakeSource(), Config{PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	subscribe := func(cols, dids []string, minTime int64) *subscriber {
		a, b := net.Pipe()
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		sub := newSubscriber(s, a, false)
		sub.filter.Store(mustFilter(t, cols, dids))
		s.mu.Lock()
		s.goLiveLocked(sub, 0, minTime)
		s.mu.Unlock()
		return sub
	}
	all := subscribe(nil, nil, 0)
	aliceOnly := subscribe(nil, []string{alice}, 0)
	bobLikes := subscribe([]string{"app.bsky.feed.like"}, []string{bob}, 0)
	posts := subscribe([]string{"app.bsky.feed.post"}, []string{alice, bob}, 0)
	late := subscribe(nil, nil, baseMS*1000+2) // from alice's third op on
	nobody := subscribe(nil, []string{carol}, 0)

	var seq uint64
	for _, f := range [][]byte{
		commitFrame(alice, "r1", testOp{"create", "app.bsky.feed.post/a", postRecord("a")},
			testOp{"create", "app.bsky.feed.like/b", postRecord("b")},
			testOp{"create", "app.bsky.graph.follow/c", postRecord("c")},
			testOp{"delete", "app.bsky.feed.post/d", nil}),
		commitFrame(bob, "r2", testOp{"create", "app.bsky.feed.post/e", postRecord("e")},
			testOp{"create", "app.bsky.feed.like/f", postRecord("f")}),
		identityFrame(alice, "alice.test"),
	} {
		seq++
		frame, err := event.RewriteSeq(nil, f, int64(seq))
		if err != nil {
			t.Fatal(err)
		}
		_ = s.pumpEvent(seq, baseMS, frame)
	}

	a, b, c, d := "commit "+alice+" app.bsky.feed.post/a create", "commit "+alice+" app.bsky.feed.like/b create",
		"commit "+alice+" app.bsky.graph.follow/c create", "commit "+alice+" app.bsky.feed.post/d delete"
	e, f := "commit "+bob+" app.bsky.feed.post/e create", "commit "+bob+" app.bsky.feed.like/f create"
	id := "identity " + alice + " 3"
	check := func(name string, sub *subscriber, want ...string) {
		t.Helper()
		n := sub.take()
		var got []string
		for i, fr := range sub.out.Batch()[:n] {
			var ev jsEvent
			if err := json.Unmarshal(fr.Bytes(), &ev); err != nil {
				t.Fatalf("%s: message %q: %v", name, fr.Bytes(), err)
			}
			got = append(got, ev.key())
			fr.Release()
			sub.out.Batch()[i] = nil
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: got\n\t%s\nwant\n\t%s", name, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
	}
	check("all", all, a, b, c, d, e, f, id)
	check("aliceOnly", aliceOnly, a, b, c, d, id)
	check("bobLikes", bobLikes, f)
	check("posts", posts, a, d, e, id)
	check("late", late, c, d, e, f, id)
	check("nobody", nobody)
}
