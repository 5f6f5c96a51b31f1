package firehose

import (
	"encoding/binary"
	"io"
	"net"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/atrelay/relay/engine/atproto/dagcbor"
	"github.com/atrelay/relay/internal/streamtest"
	"github.com/atrelay/relay/pool"
)

// testFrameSeqOff is where makeFrame puts the big-endian seq.
const testFrameSeqOff = 21

// appendTestFrame appends a #commit-shaped frame: header {t:"#commit",op:1}
// then {seq: <uint64, 8-byte form>, blob: <pad bytes>} (canonical key order).
func appendTestFrame(dst []byte, seq uint64, pad int) []byte {
	dst = append(dst, 0xa2, 0x61, 't', 0x67)
	dst = append(dst, "#commit"...)
	dst = append(dst, 0x62, 'o', 'p', 0x01, 0xa2, 0x63, 's', 'e', 'q', 0x1b)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = dagcbor.AppendText(dst, "blob")
	dst = dagcbor.AppendHead(dst, dagcbor.MajorBytes, uint64(pad))
	for i := range pad {
		dst = append(dst, byte(seq)+byte(i))
	}
	return dst
}

// frameSeq returns the seq of a test frame, or 0 for anything else.
func frameSeq(b []byte) uint64 {
	if len(b) < testFrameSeqOff+8 || b[0] != 0xa2 || b[3] != 0x67 {
		return 0
	}
	return binary.BigEndian.Uint64(b[testFrameSeqOff:])
}

// env is a hub on a loopback HTTP server with a fake Log.
type env struct {
	t      testing.TB
	hub    *Hub
	log    *streamtest.Log
	frames *pool.Frames
	srv    *httptest.Server
	url    string
	pad    int

	mu   sync.Mutex
	sent []*pool.Frame // every frame handed to Publish, for the refcount check
	next uint64        // next seq to publish
}

// newEnv preloads the log with seqs 1..preload, then builds the hub. At
// cleanup it closes the hub and checks that every published frame's
// refcount is back to zero.
func newEnv(t testing.TB, cfg Config, preload int, pad int) *env {
	e := &env{t: t, log: &streamtest.Log{}, frames: pool.NewFrames(pool.NewBuffers(nil, "firehose_test")), pad: pad}
	for s := 1; s <= preload; s++ {
		e.log.Append(uint64(s), 0, appendTestFrame(nil, uint64(s), pad))
	}
	e.next = uint64(preload) + 1
	hub, err := NewHub(e.log, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.hub = hub
	e.srv = httptest.NewServer(hub)
	e.url = "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/xrpc/com.atproto.sync.subscribeRepos"
	t.Cleanup(func() {
		e.hub.Close()
		e.srv.Close()
		e.mu.Lock()
		defer e.mu.Unlock()
		for i, f := range e.sent {
			if r := f.Refs(); r != 0 {
				t.Errorf("frame %d: refcount %d after Close, want 0", i, r)
				return
			}
		}
	})
	return e
}

// publish makes the next n events durable in the log and publishes them;
// it returns the last seq.
func (e *env) publish(n int) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	for range n {
		seq := e.next
		e.next++
		b := appendTestFrame(nil, seq, e.pad)
		e.log.Append(seq, 0, b)
		f := e.frames.Copy(b)
		e.sent = append(e.sent, f)
		if err := e.hub.Publish(seq, f); err != nil {
			e.t.Errorf("Publish(%d): %v", seq, err)
			f.Release()
		}
	}
	return e.next - 1
}

// client is a test subscriber.
type client struct {
	t    testing.TB
	conn net.Conn
	rw   io.ReadWriter
}

func (e *env) dial(cursor string) *client {
	return e.dialWith(ws.Dialer{}, cursor)
}

func (e *env) dialWith(d ws.Dialer, cursor string) *client {
	e.t.Helper()
	u := e.url
	if cursor != "" {
		u += "?cursor=" + cursor
	}
	conn, rw := streamtest.Dial(e.t, d, u)
	return &client{t: e.t, conn: conn, rw: rw}
}

// msgKind classifies a received binary message.
type msgKind int

const (
	kindEvent msgKind = iota
	kindError
	kindInfo
	kindClosed
)

type msg struct {
	kind msgKind
	seq  uint64
	data []byte
}

// read returns the next data message (control frames handled by wsutil).
func (c *client) read() msg {
	c.t.Helper()
	data, op, err := wsutil.ReadServerData(c.rw)
	if err != nil {
		return msg{kind: kindClosed, data: []byte(err.Error())}
	}
	if op != ws.OpBinary {
		c.t.Fatalf("got opcode %v, want binary", op)
	}
	switch {
	case len(data) > 5 && string(data[:5]) == "\xa1\x62op\x20":
		return msg{kind: kindError, data: data}
	case len(data) > 9 && string(data[:9]) == "\xa2\x61t\x65#info":
		return msg{kind: kindInfo, data: data}
	}
	s := frameSeq(data)
	if s == 0 {
		c.t.Fatalf("unrecognised frame % x", data[:min(len(data), 32)])
	}
	return msg{kind: kindEvent, seq: s, data: data}
}

// expectSeqs reads events from..to and fails on any gap, duplicate or
// other message.
func (c *client) expectSeqs(from, to uint64) {
	c.t.Helper()
	for want := from; want <= to; want++ {
		m := c.read()
		if m.kind != kindEvent || m.seq != want {
			c.t.Fatalf("want event %d, got kind %d seq %d (%s)", want, m.kind, m.seq, trunc(m.data))
		}
	}
}

func trunc(b []byte) string {
	if len(b) > 40 {
		b = b[:40]
	}
	return strconv.Quote(string(b))
}

// runtimeYield lets other goroutines run, to vary interleavings.
func runtimeYield() { runtime.Gosched() }

// consumerCount returns how many consumers the hub lists.
func (e *env) consumerCount() int { return len(e.hub.Consumers()) }

// waitConsumers waits until the hub lists n consumers.
func (e *env) waitConsumers(n int) {
	e.t.Helper()
	streamtest.WaitFor(e.t, strconv.Itoa(n)+" consumers", func() bool { return e.consumerCount() == n })
}
