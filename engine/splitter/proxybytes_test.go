package splitter

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/relay/internal/testutil"
)

// TestProxyRequestBytes measures what one request passed through to the
// upstream holds while the upstream streams its answer, besides the
// client's connection (measured alone, after a request the splitter
// answers itself): the proxy's copy buffer, the upstream connection's
// buffers and goroutines, both requests' and responses' state. The figure
// includes the test upstream's side of each request (it runs in this
// process), so it over-counts. ProxyRequestBytes, with which a memory budget
// counts ProxyMaxInFlight of them, must cover it.
func TestProxyRequestBytes(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's shadow memory makes heap figures meaningless")
	}
	src := startSource(t, "")
	src.add(1)
	release := make(chan struct{})
	defer close(release)
	chunk := strings.Repeat("x", 8<<10)
	src.mux.HandleFunc("GET /xrpc/com.atproto.sync.getBlob", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write([]byte(chunk))
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	const n = 150
	cfg := fastConfig(src.url())
	cfg.ProxyMaxInFlight, cfg.ProxyTimeout = 2*n, time.Minute
	node := startNode(t, cfg, 1<<20)
	node.waitSeq(1)

	inUse := testutil.LiveBytes
	// open makes n connections each sending one request, read by nobody.
	open := func(path string) []net.Conn {
		conns := make([]net.Conn, 0, n)
		for range n {
			c, err := net.Dial("tcp", node.http.addr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: splitter.example\r\n\r\n", path)
			conns = append(conns, c)
		}
		time.Sleep(500 * time.Millisecond)
		return conns
	}
	closeAll := func(conns []net.Conn) {
		for _, c := range conns {
			_ = c.Close()
		}
		time.Sleep(300 * time.Millisecond)
	}
	before := inUse()
	idle := open("/xrpc/_health")
	conn := (inUse() - before) / n
	closeAll(idle)

	before = inUse()
	busy := open("/xrpc/com.atproto.sync.getBlob?did=did:plc:x&cid=y")
	per := (inUse()-before)/n - conn
	closeAll(busy)
	t.Logf("a client connection %d B; a request passed through %d B (%.1f KiB) besides it; ProxyRequestBytes is %.1f KiB",
		conn, per, float64(per)/1024, float64(ProxyRequestBytes)/1024)
	if per > ProxyRequestBytes {
		t.Fatalf("a request passed through holds %d B > ProxyRequestBytes %d", per, ProxyRequestBytes)
	}
}
