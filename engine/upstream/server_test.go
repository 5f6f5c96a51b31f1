package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// testServer is a firehose stand-in: every upgraded connection runs script
// on the handler goroutine. It records each request's cursor.
type testServer struct {
	t       testing.TB
	srv     *httptest.Server
	script  func(sc *srvConn)
	header  http.Header // extra upgrade response headers
	status  int         // non-zero: refuse the upgrade with this status
	mu      sync.Mutex
	cursors []string // guarded by mu; "" when absent
	conns   atomic.Int64
}

func newTestServer(t testing.TB, useTLS bool, script func(sc *srvConn)) *testServer {
	ts := &testServer{t: t, script: script}
	h := http.HandlerFunc(ts.serve)
	ts.srv = httptest.NewUnstartedServer(h)
	// Refused handshakes are the point of some tests; keep them off stderr.
	ts.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if useTLS {
		ts.srv.StartTLS()
	} else {
		ts.srv.Start()
	}
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *testServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != subscribePath {
		http.NotFound(w, r)
		return
	}
	ts.mu.Lock()
	c := ""
	if r.URL.Query().Has("cursor") {
		c = r.URL.Query().Get("cursor")
	}
	ts.cursors = append(ts.cursors, c)
	ts.mu.Unlock()
	if ts.status != 0 {
		http.Error(w, "no", ts.status)
		return
	}
	conn, _, _, err := ws.HTTPUpgrader{Header: ts.header}.Upgrade(r, w)
	if err != nil {
		return
	}
	ts.conns.Add(1)
	sc := &srvConn{Conn: conn}
	defer conn.Close()
	ts.script(sc)
}

// hostname is the server's host:port.
func (ts *testServer) hostname() string {
	return strings.TrimPrefix(strings.TrimPrefix(ts.srv.URL, "https://"), "http://")
}

// tlsConfig trusts the server's certificate.
func (ts *testServer) tlsConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ts.srv.Certificate())
	return &tls.Config{RootCAs: pool}
}

func (ts *testServer) cursorLog() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.cursors...)
}

// srvConn is the server end of one connection.
type srvConn struct {
	net.Conn
}

// frameBytes encodes one unmasked server frame.
func frameBytes(op ws.OpCode, fin bool, payload []byte) []byte {
	h := ws.Header{Fin: fin, OpCode: op, Length: int64(len(payload))}
	w := &sliceWriter{b: make([]byte, 0, ws.HeaderSize(h)+len(payload))}
	if err := ws.WriteHeader(w, h); err != nil {
		panic(err)
	}
	return append(w.b, payload...)
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// send writes one frame.
func (sc *srvConn) send(op ws.OpCode, fin bool, payload []byte) error {
	_, err := sc.Write(frameBytes(op, fin, payload))
	return err
}

// readClient reads one (masked) client frame and unmasks it.
func (sc *srvConn) readClient() (ws.Frame, error) {
	f, err := ws.ReadFrame(sc.Conn)
	if err != nil {
		return f, err
	}
	if f.Header.Masked {
		ws.Cipher(f.Payload, f.Header.Mask, 0)
	}
	return f, nil
}

// drain reads until the client goes away.
func (sc *srvConn) drain() {
	_, _ = io.Copy(io.Discard, sc.Conn)
}

// payloadN is a deterministic message of n bytes tagged with i.
func payloadN(i, n int) []byte {
	p := make([]byte, n)
	for j := range p {
		p[j] = byte(i + j)
	}
	if n >= 4 {
		binary.BigEndian.PutUint32(p, uint32(i))
	}
	return p
}

// collector is a Sink that copies and releases every frame.
type collector struct {
	mu     sync.Mutex
	frames [][]byte
	notify chan struct{}
	pause  func(n int) bool // called with the count after appending; true pauses
}

func newCollector() *collector { return &collector{notify: make(chan struct{}, 1)} }

func (c *collector) sink(h *Host, f Frame) bool {
	c.mu.Lock()
	c.frames = append(c.frames, append([]byte(nil), f.Bytes()...))
	n := len(c.frames)
	c.mu.Unlock()
	f.Release()
	select {
	case c.notify <- struct{}{}:
	default:
	}
	return c.pause == nil || !c.pause(n)
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.frames)
}

func (c *collector) get(i int) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames[i]
}

// waitFor polls cond until it holds; the deadline only guards against a
// hung test, it is not an assertion about speed.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testConfig is a fast-timer development config around sink.
func testConfig(sink Sink) Config {
	return Config{
		Sink:               sink,
		AllowInsecureHosts: true,
		Tick:               5 * time.Millisecond,
		BackoffMin:         5 * time.Millisecond,
		BackoffMax:         20 * time.Millisecond,
		Readers:            2,
		MaxConcurrentDials: 4,
	}
}

func newTestLoop(t testing.TB, cfg Config) *Loop {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// disconnects records OnDisconnect calls.
type disconnects struct {
	mu   sync.Mutex
	errs []error
	rs   []Reason
}

func (d *disconnects) hook(h *Host, r Reason, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rs = append(d.rs, r)
	d.errs = append(d.errs, err)
}

func (d *disconnects) snapshot() ([]Reason, []error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Reason(nil), d.rs...), append([]error(nil), d.errs...)
}
