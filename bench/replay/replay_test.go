package replay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/atrelay/relay/bench/capture"
	"github.com/atrelay/relay/internal/fixtures"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func sharedDir() string { return fixtures.Path("captures/realpds-2") }

// originals returns the shared capture's frames per host, in order.
func originals(t testing.TB, c *capture.Capture) [][][]byte {
	t.Helper()
	out, err := capture.FramesBySource(c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func subscribeURL(h Host, query string) string {
	return "ws://" + h.Addr + "/xrpc/com.atproto.sync.subscribeRepos" + query
}

// client is a minimal allocation-free subscriber: it reads whole
// unfragmented server frames into one buffer.
type client struct {
	conn    net.Conn
	br      *bufio.Reader
	scratch [ws.MaxHeaderSize - 2]byte
	buf     []byte
}

func dial(t testing.TB, url string) *client {
	t.Helper()
	conn, br, _, err := ws.Dial(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, 64<<10)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{conn: conn, br: br, buf: make([]byte, 64<<10)}
}

// next returns the next message's opcode and payload (aliasing c.buf).
func (c *client) next() (ws.OpCode, []byte, error) {
	h, err := ws.ReadHeaderBuffer(c.br, c.scratch[:])
	if err != nil {
		return 0, nil, err
	}
	if !h.Fin || h.Masked || h.Length > int64(cap(c.buf)) {
		return 0, nil, fmt.Errorf("unexpected frame header %+v", h)
	}
	p := c.buf[:h.Length]
	_, err = io.ReadFull(c.br, p)
	return h.OpCode, p, err
}

func (c *client) expectFrames(t *testing.T, want [][]byte) {
	t.Helper()
	for i, w := range want {
		op, p, err := c.next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if op != ws.OpBinary || !bytes.Equal(p, w) {
			t.Fatalf("frame %d differs (op %v, %d bytes, want %d)", i, op, len(p), len(w))
		}
	}
}

// TestReplayRecordRoundTrip replays the shared capture as fast as possible,
// records both hosts from cursor=0 with the Recorder (fetching DID documents
// from the fleet's PLC), and checks the recording holds the original frames
// byte for byte, per host, in order, and 120 rewritten DID documents.
func TestReplayRecordRoundTrip(t *testing.T) {
	c, err := capture.ImportShared(sharedDir())
	if err != nil {
		t.Fatal(err)
	}
	want := originals(t, c)
	f, err := Start(context.Background(), c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hosts := f.Replay.Hosts()
	var urls []string
	for _, h := range hosts {
		urls = append(urls, subscribeURL(h, "?cursor=0"))
	}
	var buf bytes.Buffer
	st, err := capture.Recorder{URLs: urls, MaxFrames: 18_694, PLC: f.PLCURL}.Run(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if st.Frames != 18_694 || st.DIDs != 120 || st.Docs != 120 || st.DocErrors != 0 {
		t.Fatalf("recorder stats: %+v", st)
	}
	t.Logf("recorded %d frames (%d bytes) in %v", st.Frames, st.Bytes, st.Elapsed)

	rc, err := capture.OpenReaderAt(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	got := originals(t, rc)
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("host %d: recorded %d frames, want %d", i, len(got[i]), len(want[i]))
		}
		for k := range want[i] {
			if !bytes.Equal(got[i][k], want[i][k]) {
				t.Fatalf("host %d frame %d differs", i, k)
			}
		}
	}
	for did, doc := range rc.Identities {
		var d struct {
			Service []struct{ ServiceEndpoint string } `json:"service"`
		}
		if err := json.Unmarshal(doc, &d); err != nil {
			t.Fatal(err)
		}
		ep := d.Service[0].ServiceEndpoint
		if ep != "http://"+hosts[0].Name && ep != "http://"+hosts[1].Name {
			t.Fatalf("%s: endpoint %s not rewritten to a replay host", did, ep)
		}
	}
	for i, s := range f.Replay.Stats() {
		if s.FramesSent != int64(len(want[i])) || s.Connections != 1 {
			t.Fatalf("host %d stats: %+v", i, s)
		}
	}
}

func TestCursorSemantics(t *testing.T) {
	c, err := capture.ImportShared(sharedDir())
	if err != nil {
		t.Fatal(err)
	}
	want := originals(t, c)[0]
	r, err := New(c, Options{Gated: true, BlockBytes: 64 << 10}) // small blocks: cursors land mid-block
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := r.Hosts()[0]
	if h.Frames != 9314 || h.LastSeq != 9314 || h.Original != "localhost:5201" || !strings.HasPrefix(h.Name, "localhost:") {
		t.Fatalf("host: %+v", h)
	}

	// Before the gate opens, the head is 0: a live-only and a cursor=0
	// subscriber both wait, then get every frame from seq 1.
	live := dial(t, subscribeURL(h, ""))
	zero := dial(t, subscribeURL(h, "?cursor=0"))
	r.Start()
	live.expectFrames(t, want)
	zero.expectFrames(t, want)

	t.Run("mid cursor", func(t *testing.T) {
		for _, cur := range []int{1, 5000, 9313} {
			c := dial(t, subscribeURL(h, fmt.Sprintf("?cursor=%d", cur)))
			c.expectFrames(t, want[cur:])
		}
	})
	t.Run("cursor at head", func(t *testing.T) {
		c := dial(t, subscribeURL(h, "?cursor=9314"))
		expectOnlyPong(t, c)
	})
	t.Run("live only after the end", func(t *testing.T) {
		// Every frame is published, so a live-only subscriber gets none:
		// the first thing it receives is the pong to its ping.
		expectOnlyPong(t, dial(t, subscribeURL(h, "")))
	})
	t.Run("future cursor", func(t *testing.T) {
		c := dial(t, subscribeURL(h, "?cursor=9315"))
		op, p, err := c.next()
		if err != nil || op != ws.OpBinary {
			t.Fatalf("first message: %v %v", op, err)
		}
		info, err := capture.PeekFrame(p)
		if err != nil || info.Op != -1 || info.Error != "FutureCursor" {
			t.Fatalf("error frame: %+v %v", info, err)
		}
		if op, _, err := c.next(); err != nil || op != ws.OpClose {
			t.Fatalf("after the error frame: %v %v", op, err)
		}
	})
	t.Run("bad cursor", func(t *testing.T) {
		for _, q := range []string{"?cursor=-1", "?cursor=abc", "?cursor="} {
			resp, err := http.Get("http://" + h.Addr + "/xrpc/com.atproto.sync.subscribeRepos" + q)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s: HTTP %d", q, resp.StatusCode)
			}
		}
	})
}

// expectOnlyPong pings and checks the pong is the next message.
func expectOnlyPong(t *testing.T, c *client) {
	t.Helper()
	if err := wsutil.WriteClientMessage(c.conn, ws.OpPing, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	op, p, err := c.next()
	if err != nil || op != ws.OpPong || string(p) != "hi" {
		t.Fatalf("got op %v %q %v, want the pong", op, p, err)
	}
}

func TestHTTPEndpoints(t *testing.T) {
	f, err := StartFromShared(context.Background(), sharedDir(), Options{Gated: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Hostnames) != 2 {
		t.Fatalf("hostnames: %v", f.Hostnames)
	}
	h := f.Replay.Hosts()[1]
	for path, want := range map[string]string{
		"/xrpc/com.atproto.server.describeServer": `{"availableUserDomains":[],"did":"did:web:localhost"}`,
		"/xrpc/_health": `{"status":"ok"}`,
	} {
		resp, err := http.Get("http://" + h.Addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
	// The fake PLC points each DID at its replay host.
	resp, err := http.Get(f.PLCURL + "/did:plc:2byqcfdosfn3d62gus5ctvts")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"serviceEndpoint":"http://`+f.Hostnames[0]+`"`) {
		t.Fatalf("PLC document not rewritten to %s: %s", f.Hostnames[0], body)
	}
}

func TestContextCancelCloses(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f, err := StartFromShared(ctx, sharedDir(), Options{Gated: true})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, subscribeURL(f.Replay.Hosts()[0], ""))
	cancel()
	// The replayer closes the connection: reading ends in an error.
	for {
		if _, _, err := c.next(); err != nil {
			break
		}
	}
	f.Close()
}

func TestScaledPacing(t *testing.T) {
	// Three frames 1 ms apart at real speed: order and bytes are what
	// matter here (timing belongs in benchmarks).
	frames := [][]byte{
		[]byte("\xa2\x61t\x69#identity\x62op\x01\xa1\x63seq\x01"),
		[]byte("\xa2\x61t\x69#identity\x62op\x01\xa1\x63seq\x02"),
		[]byte("\xa2\x61t\x69#identity\x62op\x01\xa1\x63seq\x03"),
	}
	c := memCapture(t, frames, 1_000_000)
	r, err := New(c, Options{Pacing: Scaled, Speed: 1, Gated: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cl := dial(t, subscribeURL(r.Hosts()[0], "?cursor=0"))
	r.Start()
	cl.expectFrames(t, frames)
}

// memCapture builds a one-source capture of frames with seqs 1..n spaced
// step ns apart.
func memCapture(t testing.TB, frames [][]byte, step int64) *capture.Capture {
	t.Helper()
	recs := make([]capture.Record, len(frames))
	for i, f := range frames {
		recs[i] = capture.Record{RecvTime: int64(i) * step, Seq: int64(i + 1), Frame: f}
	}
	return recordsCapture(t, recs)
}

// recordsCapture builds a one-source in-memory capture holding recs.
func recordsCapture(t testing.TB, recs []capture.Record) *capture.Capture {
	t.Helper()
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, capture.Header{Sources: []capture.Source{{Hostname: "pds.test", Frames: capture.CountUnknown}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := capture.OpenReaderAt(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
