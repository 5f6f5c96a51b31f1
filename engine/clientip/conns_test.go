package clientip

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// startLimited serves a handler answering "ok" (and hijacking on /hijack,
// holding the connection until the test ends, and sending on hijacked)
// behind a ConnLimiter; exemptLoopback is its ExemptLoopback.
func startLimited(t *testing.T, maxTotal, maxPerIP int, p Policy, exemptLoopback bool) (*httptest.Server, *ConnLimiter, <-chan struct{}) {
	t.Helper()
	l := NewConnLimiter(metrics.NewSet(), "test_conns_open", "test_conns_refused_total", maxTotal, maxPerIP, p)
	l.ExemptLoopback = exemptLoopback
	held := make(chan struct{})
	hijacked := make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hijack" {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				hijacked <- struct{}{}
				<-held
				_ = c.Close()
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = l.Hook
	srv.Start()
	t.Cleanup(func() { close(held); srv.Close() })
	return srv, l, hijacked
}

// get sends one keep-alive request on a new connection and reports whether
// it was answered; the connection stays open.
func get(t *testing.T, srv *httptest.Server, path string) (net.Conn, bool) {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		return c, false
	}
	if path == "/hijack" {
		return c, true
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return c, false
	}
	_ = resp.Body.Close()
	return c, resp.StatusCode == http.StatusOK
}

// waitOpen waits until l holds n slots (the server updates it from its
// own goroutines).
func waitOpen(t *testing.T, l *ConnLimiter, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); l.Open() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open, want %d", l.Open(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestConnLimiter: idle keep-alive connections hold their slot, one over
// the per-client cap is closed unanswered, a closed or hijacked one gives
// its slot back, and a trusted proxy is held to the total only.
func TestConnLimiter(t *testing.T) {
	srv, l, _ := startLimited(t, 3, 2, Policy{}, false)
	a, ok1 := get(t, srv, "/")
	_, ok2 := get(t, srv, "/")
	if !ok1 || !ok2 {
		t.Fatal("the first two connections were not served")
	}
	if _, ok := get(t, srv, "/"); ok {
		t.Fatal("a third connection from one client was served, over its cap of 2")
	}
	if n := l.refused[RefusePerIP].Get(); n != 1 {
		t.Fatalf("%d refused per client, want 1", n)
	}
	waitOpen(t, l, 2)
	_ = a.Close()
	waitOpen(t, l, 1)
	if _, ok := get(t, srv, "/"); !ok {
		t.Fatal("a connection was refused after one closed")
	}
	waitOpen(t, l, 2)

	// A hijacked connection is its endpoint's to count.
	srv2, l2, hijacked := startLimited(t, 3, 1, Policy{}, false)
	if _, ok := get(t, srv2, "/hijack"); !ok {
		t.Fatal("hijack request not sent")
	}
	<-hijacked
	waitOpen(t, l2, 0)
	if _, ok := get(t, srv2, "/"); !ok {
		t.Fatal("a connection was refused beside a hijacked one")
	}

	// Behind a trusted proxy every client is the proxy: the total applies;
	// so it does to loopback peers with ExemptLoopback.
	for _, tc := range []struct {
		name     string
		p        Policy
		loopback bool
	}{
		{"trusted proxy", Policy{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, false},
		{"loopback", Policy{}, true},
	} {
		srv3, l3, _ := startLimited(t, 3, 1, tc.p, tc.loopback)
		for i := range 3 {
			if _, ok := get(t, srv3, "/"); !ok {
				t.Fatalf("%s: connection %d not served", tc.name, i+1)
			}
		}
		if _, ok := get(t, srv3, "/"); ok {
			t.Fatalf("%s: a fourth connection was served, over the total of 3", tc.name)
		}
		if n := l3.refused[RefuseGlobal].Get(); n != 1 {
			t.Fatalf("%s: %d refused over the total, want 1", tc.name, n)
		}
	}
}
