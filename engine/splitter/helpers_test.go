package splitter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/gobwas/ws"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/internal/streamtest"
	"github.com/atrelay/relay/pool"
	"github.com/atrelay/relay/store"
)

// hangTimeout bounds every wait: it turns a hang into a failure and
// asserts no speed (the race detector on a loaded 2-core machine is slow).
const hangTimeout = 2 * time.Minute

// testLogger logs to stderr when RELAY_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("RELAY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// fastConfig is a splitter config with test-sized backoff.
func fastConfig(upstream string) Config {
	return Config{Upstream: upstream, Backfill: true, BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond}
}

// server is an HTTP server on a fixed loopback address that survives
// restarts: the first listen picks a port, later ones reuse it.
type server struct {
	t    *testing.T
	addr string
	srv  *http.Server
}

func (s *server) listen(h http.Handler) {
	s.t.Helper()
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(hangTimeout); ; {
		if ln, err = net.Listen("tcp", addr); err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.srv = &http.Server{Handler: h}
	go func() { _ = s.srv.Serve(ln) }()
}

func (s *server) close() {
	if s.srv != nil {
		_ = s.srv.Close()
		s.srv = nil
	}
}

// logNode is a store, a hub on it and a server publishing the hub: the
// part a relay, a splitter and the test's fake upstream share.
type logNode struct {
	t    *testing.T
	dir  string
	ring int
	set  *metrics.Set
	st   *store.Store
	hub  *firehose.Hub
	mux  *http.ServeMux
	http server
}

func (n *logNode) open() {
	n.t.Helper()
	st, err := store.Open(n.dir, store.Options{Sync: store.NoSync, BlockCacheBytes: 8 << 20, MemTableBytes: 4 << 20})
	if err != nil {
		n.t.Fatal(err)
	}
	n.set = metrics.NewSet()
	hub, err := firehose.NewHub(store.FirehoseLog{St: st}, firehose.Config{RingBytes: n.ring, Metrics: n.set})
	if err != nil {
		n.t.Fatal(err)
	}
	n.st, n.hub = st, hub
}

func (n *logNode) closeLog() {
	n.http.close()
	n.hub.Close()
	if err := n.st.Close(); err != nil {
		n.t.Errorf("store close: %v", err)
	}
}

// url is the node's ws:// address.
func (n *logNode) url() string { return "ws://" + n.http.addr }

// node is a splitter serving its public API on a fixed address.
type node struct {
	logNode
	cfg Config
	sp  *Splitter
	// extra, when set, is mounted beside the splitter (tests of handlers).
	extra func(*http.ServeMux)
}

// startNode starts a splitter on a fresh directory, following cfg.Upstream.
func startNode(t *testing.T, cfg Config, ring int) *node {
	t.Helper()
	n := &node{logNode: logNode{t: t, dir: t.TempDir(), ring: ring, http: server{t: t}}, cfg: cfg}
	n.start()
	t.Cleanup(n.stop)
	return n
}

// start opens the node on its directory and address.
func (n *node) start() {
	n.t.Helper()
	n.open()
	sp, err := New(n.cfg, Deps{Store: n.st, Hub: n.hub, Metrics: n.set, Logger: testLogger()})
	if err != nil {
		n.t.Fatal(err)
	}
	n.sp = sp
	n.http.listen(sp.Handler())
	if err := sp.Start(); err != nil {
		n.t.Fatal(err)
	}
}

// stop closes the node; its directory and address stay for start. Safe to
// call twice.
func (n *node) stop() {
	if n.sp == nil {
		return
	}
	n.sp.Close()
	n.closeLog()
	n.sp = nil
}

// waitSeq waits until the node's newest stored seq is at least seq.
func (n *node) waitSeq(seq uint64) {
	n.t.Helper()
	waitFor(n.t, fmt.Sprintf("%s to store seq %d", n.http.addr, seq), func() bool { return uint64(n.st.NewestSeq()) >= seq })
}

// source is a fake upstream relay whose log the test writes: frames are
// appended at the seqs the test names and published to its hub.
type source struct {
	logNode
	frames *pool.Frames
}

// startSource starts a fake upstream on a fresh log, on addr ("" picks a
// port).
func startSource(t *testing.T, addr string) *source {
	t.Helper()
	s := &source{logNode: logNode{t: t, dir: t.TempDir(), ring: 1 << 20, http: server{t: t, addr: addr}},
		frames: pool.NewFrames(pool.NewBuffers(nil, "source"))}
	s.start()
	t.Cleanup(func() {
		if s.st != nil {
			s.stop()
		}
	})
	return s
}

func (s *source) start() {
	s.t.Helper()
	s.open()
	s.mux = http.NewServeMux()
	s.mux.Handle(subscribePath, s.hub)
	s.http.listen(s.mux)
}

// stop kills the source: its consumers are dropped, its log stays.
func (s *source) stop() {
	s.closeLog()
	s.st = nil
}

// restart brings a stopped source back on the same address and log.
func (s *source) restart() {
	s.t.Helper()
	s.start()
}

// identityFrame is a canonical #identity frame carrying seq.
func identityFrame(seq uint64) []byte {
	return event.AppendIdentity(nil, &event.Identity{Seq: int64(seq), DID: []byte("did:plc:splittertest" + strconv.FormatUint(seq%7, 10)),
		Time: []byte("2026-11-25T22:17:57.806Z")})
}

// add logs and publishes one #identity frame per seq.
func (s *source) add(seqs ...uint64) {
	s.t.Helper()
	evs := make([]store.SeqEvent, len(seqs))
	for i, seq := range seqs {
		evs[i] = store.SeqEvent{Seq: store.Seq(seq), Kind: store.KindIdentity, Frame: identityFrame(seq)}
	}
	if err := s.st.AppendAt(evs); err != nil {
		s.t.Fatal(err)
	}
	for _, e := range evs {
		if err := s.hub.Publish(uint64(e.Seq), s.frames.Copy(e.Frame)); err != nil {
			s.t.Fatal(err)
		}
	}
}

// span returns the seqs from..to.
func span(from, to uint64) []uint64 {
	out := make([]uint64, 0, to-from+1)
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// consumer collects every binary frame of one subscribeRepos connection.
type consumer struct{ *streamtest.Collector }

// dial subscribes to the node at url (ws://host:port) with cursor, or
// live when cursor < 0.
func dial(t *testing.T, url string, cursor int64) *consumer {
	t.Helper()
	c, err := tryDial(t, url, cursor)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tryDial is dial returning the error, for goroutines other than the
// test's.
func tryDial(t *testing.T, url string, cursor int64) (*consumer, error) {
	u := url + subscribePath
	if cursor >= 0 {
		u += "?cursor=" + strconv.FormatInt(cursor, 10)
	}
	conn, br, _, err := ws.Dial(context.Background(), u)
	if err != nil {
		return nil, err
	}
	var src io.Reader = conn
	if br != nil {
		src = io.MultiReader(br, conn)
	}
	rw := struct {
		io.Reader
		io.Writer
	}{src, conn}
	return &consumer{streamtest.Collect(t, conn, rw, nil)}, nil
}

// waitFrames waits until c holds n frames and returns them.
func (c *consumer) waitFrames(t *testing.T, n int) [][]byte {
	t.Helper()
	return c.Wait(t, n, hangTimeout)
}

// waitFor polls cond until it holds, failing after hangTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// seqOf returns a frame's seq (0 for frames without one).
func seqOf(t *testing.T, f []byte) uint64 {
	t.Helper()
	var p event.Peeked
	if err := event.Peek(f, &p); err != nil {
		t.Fatalf("peek: %v", err)
	}
	return uint64(p.Seq)
}

// seqsOf returns the seqs of frames.
func seqsOf(t *testing.T, frames [][]byte) []uint64 {
	t.Helper()
	out := make([]uint64, len(frames))
	for i, f := range frames {
		out[i] = seqOf(t, f)
	}
	return out
}

// logged returns the seqs and frames of st's log after cursor.
func logged(t *testing.T, st *store.Store, cursor uint64) (seqs []uint64, frames [][]byte) {
	t.Helper()
	it, err := st.NewIterator(store.Seq(cursor))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for it.Next() {
		seqs = append(seqs, uint64(it.Seq()))
		frames = append(frames, bytes.Clone(it.Frame()))
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return seqs, frames
}

// sameStream fails unless got is want, frame for frame and byte for byte,
// and each frame's own seq is its log seq.
func sameStream(t *testing.T, what string, got [][]byte, wantSeqs []uint64, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d frames, want %d", what, len(got), len(want))
	}
	for i := range got {
		if s := seqOf(t, got[i]); s != wantSeqs[i] {
			t.Fatalf("%s: frame %d has seq %d, want %d", what, i, s, wantSeqs[i])
		}
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s: frame %d (seq %d) differs", what, i, wantSeqs[i])
		}
	}
}

// counter reads a metric of set by its full name.
func counter(t *testing.T, set *metrics.Set, name string) uint64 {
	t.Helper()
	var b bytes.Buffer
	set.WritePrometheus(&b)
	for _, line := range bytes.Split(b.Bytes(), []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte(name+" ")); ok {
			n, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return uint64(n)
		}
	}
	t.Fatalf("metric %s not exported", name)
	return 0
}
