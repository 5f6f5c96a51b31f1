package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/engine/clientip"
	"github.com/atrelay/relay/internal/testutil"
)

// TestHTTPConnBytes measures what a connection to the public listener
// holds at worst before a WebSocket endpoint hijacks it: the server's
// goroutine and buffers with a request's headers being read, just under
// maxHeaderBytes, and not finished. httpConnBytes, which sizes the
// connection cap from the memory budget, must cover it. The figure
// includes the test's own end of each connection, so it over-counts a
// little.
func TestHTTPConnBytes(t *testing.T) {
	srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	l := clientip.NewConnLimiter(metrics.NewSet(), "test_open", "test_refused_total", 10_000, 10_000, clientip.Policy{})
	srv.ConnState = l.Hook
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	// Headers as long as the server reads (maxHeaderBytes and the 4 KiB
	// net/http allows beyond it), less the final empty line.
	var hdr strings.Builder
	hdr.WriteString("GET / HTTP/1.1\r\nHost: relay.example\r\n")
	for i := 0; hdr.Len() < maxHeaderBytes+3<<10; i++ {
		fmt.Fprintf(&hdr, "X-Filler-%d: %s\r\n", i, strings.Repeat("a", 900))
	}
	inUse := testutil.LiveBytes
	for _, tc := range []struct {
		name string
		send func(c net.Conn) error
	}{
		{"idle after a request", func(c net.Conn) error {
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: relay.example\r\n\r\n"); err != nil {
				return err
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				err = resp.Body.Close()
			}
			return err
		}},
		{"headers pending", func(c net.Conn) error {
			_, err := io.WriteString(c, hdr.String())
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 300
			before := inUse()
			conns := make([]net.Conn, 0, n)
			defer func() {
				for _, c := range conns {
					_ = c.Close()
				}
			}()
			for range n {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.send(c); err != nil {
					t.Fatal(err)
				}
			}
			// The server has read what was sent once every connection is
			// counted and the header bytes are in (a short settle).
			for deadline := time.Now().Add(10 * time.Second); l.Open() < n; {
				if time.Now().After(deadline) {
					t.Fatalf("%d connections open, want %d", l.Open(), n)
				}
				time.Sleep(time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
			per := (inUse() - before) / n
			t.Logf("%s: %d B (%.1f KiB) per connection; httpConnBytes is %.1f KiB", tc.name, per, float64(per)/1024, float64(httpConnBytes)/1024)
			if per > httpConnBytes {
				t.Fatalf("a connection holds %d B > httpConnBytes %d", per, httpConnBytes)
			}
		})
	}
}
