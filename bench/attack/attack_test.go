package attack

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// TestAttackers plays the relay's side against every attacker: each host
// answers describeServer, then misbehaves on its subscription as its Kind
// says; the floods reach the relay's public endpoints and Stop reports them.
func TestAttackers(t *testing.T) {
	var crawls atomic.Int64
	relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "requestCrawl") {
			crawls.Add(1)
			return
		}
		http.Error(w, "too many", http.StatusTooManyRequests)
	}))
	defer relay.Close()
	s, err := Start(context.Background(), Options{RelayAPI: relay.URL, HostsPerKind: 1, BlackholeListeners: 2,
		Consumers: 5, CrawlPerSecond: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.hosts {
		resp, err := http.Get("http://" + h.ln.Addr().String() + "/xrpc/com.atproto.server.describeServer")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: describeServer: %v %v", h.kind, resp, err)
		}
		resp.Body.Close()
		checkKind(t, h)
	}
	time.Sleep(200 * time.Millisecond) // some of the crawl flood
	st := s.Stop()
	if got := st.Crawl["200"]; got < int64(numKinds)+5 {
		t.Errorf("crawl answers %v: want the %d hosts announced and a flood after them", st.Crawl, numKinds)
	}
	if st.ConsumersRefused["429"] != 5 || st.ConsumersAdmitted != 0 {
		t.Errorf("consumer flood: admitted %d, refused %v; want 5 refused with 429", st.ConsumersAdmitted, st.ConsumersRefused)
	}
	if st.SubscribersRefused["429"] != 5 || st.SubscribersAdmitted != 0 {
		t.Errorf("Jetstream subscriber flood: admitted %d, refused %v; want 5 refused with 429", st.SubscribersAdmitted, st.SubscribersRefused)
	}
	for k := Kind(0); k < numKinds; k++ {
		if hs := st.Hosts[k.String()]; hs.Conns != 1 || hs.Bytes == 0 {
			t.Errorf("%s: %+v, want one connection that was sent bytes", k, hs)
		}
	}
}

// checkKind subscribes to h as a relay would and checks its misbehaviour.
func checkKind(t *testing.T, h *host) {
	t.Helper()
	c, err := net.Dial("tcp", h.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /xrpc/com.atproto.sync.subscribeRepos?cursor=7 HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"+
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", h.name)
	br := bufio.NewReader(c)
	if h.kind == EndlessHeader {
		head := make([]byte, 1<<20)
		if _, err := io.ReadFull(br, head); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(head, []byte("\r\n\r\n")) {
			t.Errorf("endless header ended within 1 MiB")
		}
		return
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("%s: upgrade: %v %v", h.kind, resp, err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("accept key %q (RFC 6455's example)", got)
	}
	hdr, err := ws.ReadHeader(br)
	if err != nil {
		t.Fatalf("%s: %v", h.kind, err)
	}
	switch h.kind {
	case Trickle:
		if hdr.Length != 4_990_000 {
			t.Errorf("trickle declares %d bytes", hdr.Length)
		}
	case PingFlood:
		if hdr.OpCode != ws.OpPing {
			t.Errorf("ping flood sent op %v", hdr.OpCode)
		}
	default:
		body := make([]byte, hdr.Length)
		if _, err := io.ReadFull(br, body); err != nil {
			t.Fatal(err)
		}
		want := map[Kind]string{FutureCursor: "FutureCursor", InfoFlood: "#info", DIDWebFlood: "did:web:localhost%3A"}[h.kind]
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("%s: frame lacks %q", h.kind, want)
		}
		if h.kind == DIDWebFlood && !bytes.Contains(body, []byte{0x63, 's', 'e', 'q', 0x08}) {
			t.Errorf("didweb flood: first seq is not the cursor + 1 (8)")
		}
	}
}
