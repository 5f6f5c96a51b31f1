package jetstream

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/klauspost/compress/zstd"

	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/dagcbor"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/internal/streamtest"
)

// fakeSource is an in-memory Source with the store's semantics: seqs from
// 1, commit times that never go back, a time index holding the first seq
// of each second, and retention that drops index entries pointing below
// the new oldest seq. The events and their replay are a streamtest.Log.
type fakeSource struct {
	streamtest.Log

	mu      sync.Mutex // guards the fields below; taken before the Log's
	next    uint64
	lastMS  int64
	lastSec int64
	index   []secEntry // by sec, only advancing
}

type secEntry struct {
	sec int64
	seq uint64
}

func newFakeSource() *fakeSource { return &fakeSource{next: 1, lastSec: -1} }

// Append logs frame (its body seq rewritten to the new seq) as committed at
// unixMilli and returns the seq.
func (f *fakeSource) Append(t testing.TB, unixMilli int64, frame []byte) uint64 {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	seq := f.next
	b, err := event.RewriteSeq(nil, frame, int64(seq))
	if err != nil {
		t.Fatalf("RewriteSeq: %v", err)
	}
	f.next++
	unixMilli = max(unixMilli, f.lastMS)
	f.lastMS = unixMilli
	if sec := floorDiv(unixMilli, 1000); sec > f.lastSec {
		f.lastSec = sec
		f.index = append(f.index, secEntry{sec, seq})
	}
	f.Log.Append(seq, unixMilli, b)
	return seq
}

// TrimBefore drops every event with seq < oldest, and the index entries
// pointing below it, as store retention does.
func (f *fakeSource) TrimBefore(oldest uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Log.TrimBefore(oldest)
	j := sort.Search(len(f.index), func(j int) bool { return f.index[j].seq >= oldest })
	f.index = append([]secEntry(nil), f.index[j:]...)
}

func (f *fakeSource) SeqAtTime(t time.Time) (uint64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sec := t.Unix()
	j := sort.Search(len(f.index), func(j int) bool { return f.index[j].sec >= sec })
	if j == len(f.index) {
		return 0, false, nil
	}
	return f.index[j].seq, true, nil
}

// testOp is one op of a test commit: a record (nil for delete) at path.
type testOp struct {
	action string
	path   string
	record []byte
}

// commitFrame builds a #commit frame (seq 1, rewritten on Append) whose
// CAR slice holds the records of its create and update ops.
func commitFrame(did, rev string, ops ...testOp) []byte {
	root := cid.Sum(cid.CodecDagCBOR, []byte("commit "+rev))
	blocks := car.AppendHeader(nil, root)
	c := event.Commit{Seq: 1, Repo: []byte(did), Commit: root, Rev: []byte(rev), Time: []byte("2026-11-25T22:17:57.806Z")}
	for _, o := range ops {
		op := event.Op{Action: []byte(o.action), Path: []byte(o.path)}
		if o.record != nil {
			op.CID = cid.Sum(cid.CodecDagCBOR, o.record)
			blocks = car.AppendBlock(blocks, op.CID, o.record)
		}
		c.Ops = append(c.Ops, op)
	}
	c.Blocks = blocks
	return event.AppendCommit(nil, &c)
}

// postRecord is a canonical app.bsky.feed.post record with the given text.
func postRecord(text string) []byte {
	b := dagcbor.AppendMapHeader(nil, 3)
	b = dagcbor.AppendText(b, "text")
	b = dagcbor.AppendText(b, text)
	b = dagcbor.AppendText(b, "$type")
	b = dagcbor.AppendText(b, "app.bsky.feed.post")
	b = dagcbor.AppendText(b, "createdAt")
	return dagcbor.AppendText(b, "2026-11-25T22:17:57.806Z")
}

func identityFrame(did, handle string) []byte {
	e := event.Identity{Seq: 1, DID: []byte(did), Time: []byte("2026-11-25T22:17:57.806Z")}
	if handle != "" {
		e.Handle = []byte(handle)
	}
	return event.AppendIdentity(nil, &e)
}

func accountFrame(did string, active bool, status string) []byte {
	a := event.Account{Seq: 1, DID: []byte(did), Time: []byte("2026-11-25T22:17:57.806Z"), Active: active}
	if status != "" {
		a.Status = []byte(status)
	}
	return event.AppendAccount(nil, &a)
}

// testNowMS is the tests' clock: an hour after their events' times.
const testNowMS = 1_764_109_077_806 + 3_600_000

// testServer is a Server on a real loopback listener.
type testServer struct {
	*Server
	src *fakeSource
	hs  *httptest.Server
}

func startServer(t *testing.T, src *fakeSource, cfg Config) *testServer {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	if cfg.Now == nil {
		// The test events are from 2026-11-25; "now" is an hour later, so
		// their stamps are never future cursors, whatever the real date.
		cfg.Now = func() time.Time { return time.UnixMilli(testNowMS) }
	}
	s, err := New(src, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := &testServer{Server: s, src: src, hs: httptest.NewServer(s)}
	t.Cleanup(func() {
		ts.hs.CloseClientConnections()
		s.Close()
		ts.hs.Close()
	})
	return ts
}

// client is a test Jetstream client: a gobwas/ws connection.
type client struct {
	t    testing.TB
	conn net.Conn
	rw   io.ReadWriter
	dec  *zstd.Decoder
}

func (ts *testServer) dial(t testing.TB, query string) *client {
	t.Helper()
	return ts.dialWith(t, ws.Dialer{}, query)
}

// dialWith connects a client with dialer d.
func (ts *testServer) dialWith(t testing.TB, d ws.Dialer, query string) *client {
	t.Helper()
	url := strings.Replace(ts.hs.URL, "http://", "ws://", 1) + "/subscribe"
	if query != "" {
		url += "?" + query
	}
	conn, rw := streamtest.Dial(t, d, url)
	return &client{t: t, conn: conn, rw: struct {
		io.Reader
		io.Writer
	}{bufio.NewReader(rw), conn}}
}

// next returns the next data message; it fails the test after timeout.
func (c *client) next(timeout time.Duration) ([]byte, ws.OpCode) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	b, op, err := wsutil.ReadServerData(c.rw)
	if err != nil {
		c.t.Fatalf("reading a message: %v", err)
	}
	return b, op
}

// event is the next message decoded into an object (decompressed if
// binary).
func (c *client) event(timeout time.Duration) jsEvent {
	c.t.Helper()
	b, op := c.next(timeout)
	if op == ws.OpBinary {
		if c.dec == nil {
			d, err := zstd.NewReader(nil, zstd.WithDecoderDicts(readDict(c.t)))
			if err != nil {
				c.t.Fatal(err)
			}
			c.dec = d
		}
		var err error
		if b, err = c.dec.DecodeAll(b, nil); err != nil {
			c.t.Fatalf("zstd: %v", err)
		}
	}
	var e jsEvent
	if err := json.Unmarshal(b, &e); err != nil {
		c.t.Fatalf("message %q: %v", b, err)
	}
	e.raw = b
	return e
}

// expectNothing checks that no data message arrives within d.
func (c *client) expectNothing(d time.Duration) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	b, _, err := wsutil.ReadServerData(c.rw)
	if err == nil {
		c.t.Fatalf("unexpected message %q", b)
	}
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		c.t.Fatalf("expected a read timeout, got %v", err)
	}
}

// closeCode reads frames until the server's close frame and returns its
// code, without answering it (the server may already have closed the
// socket).
func (c *client) closeCode(timeout time.Duration) int {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		f, err := ws.ReadFrame(c.rw)
		if err != nil {
			c.t.Fatalf("expected a close frame, got %v", err)
		}
		if f.Header.OpCode == ws.OpClose {
			if len(f.Payload) < 2 {
				return 0
			}
			return int(f.Payload[0])<<8 | int(f.Payload[1])
		}
	}
}

func (c *client) sendText(s string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.conn, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// jsEvent is the JSON of one Jetstream event, as a client reads it.
type jsEvent struct {
	DID    string `json:"did"`
	TimeUS int64  `json:"time_us"`
	Kind   string `json:"kind"`
	Commit *struct {
		Rev        string          `json:"rev"`
		Operation  string          `json:"operation"`
		Collection string          `json:"collection"`
		RKey       string          `json:"rkey"`
		Record     json.RawMessage `json:"record"`
		CID        string          `json:"cid"`
	} `json:"commit"`
	Identity *struct {
		DID    string  `json:"did"`
		Handle *string `json:"handle"`
		Seq    int64   `json:"seq"`
		Time   string  `json:"time"`
	} `json:"identity"`
	Account *struct {
		Active bool    `json:"active"`
		DID    string  `json:"did"`
		Seq    int64   `json:"seq"`
		Status *string `json:"status"`
		Time   string  `json:"time"`
	} `json:"account"`
	raw []byte
}

// key names an event for comparisons: kind, DID, and rkey or seq.
func (e jsEvent) key() string {
	switch {
	case e.Commit != nil:
		return fmt.Sprintf("commit %s %s/%s %s", e.DID, e.Commit.Collection, e.Commit.RKey, e.Commit.Operation)
	case e.Identity != nil:
		return fmt.Sprintf("identity %s %d", e.DID, e.Identity.Seq)
	case e.Account != nil:
		return fmt.Sprintf("account %s %d", e.DID, e.Account.Seq)
	}
	return "unknown"
}

func readDict(t testing.TB) []byte {
	t.Helper()
	b, err := readFixture("jetstream/legacy_subscribe.zdict")
	if err != nil {
		t.Fatalf("dictionary: %v", err)
	}
	return b
}

// checkNoLeak fails if goroutines started during the test outlive it.
func checkNoLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("goroutines: %d > %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
