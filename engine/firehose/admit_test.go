package firehose

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/atrelay/relay/engine/clientip"
	"github.com/atrelay/relay/internal/testutil"
)

// refusal sends a WebSocket upgrade request for subscribeRepos over a
// real socket and returns the refusal's response; a 101 fails the test.
func (e *env) refusal(t *testing.T, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	return testutil.UpgradeRefused(t, e.srv.Client(), e.srv.URL+"/xrpc/com.atproto.sync.subscribeRepos", hdr)
}

// wantRefusal checks an HTTP refusal (refusal's answer): status, XRPC
// error name, Retry-After.
func wantRefusal(t *testing.T, resp *http.Response, raw []byte, status int, name string) {
	t.Helper()
	var body struct{ Error string }
	_ = json.Unmarshal(raw, &body)
	if resp.StatusCode != status || body.Error != name || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("refusal: status %d error %q Retry-After %q; want %d %q and a Retry-After",
			resp.StatusCode, body.Error, resp.Header.Get("Retry-After"), status, name)
	}
}

// waitHeld waits until the hub holds n connection slots; a slot that is
// never given back fails the test after a generous deadline.
func waitHeld(t *testing.T, e *env, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for e.hub.adm.Held() != n {
		if time.Now().After(deadline) {
			t.Fatalf("hub holds %d connection slots, want %d", e.hub.adm.Held(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestConsumerCapPerIP opens MaxConsumersPerIP consumers from 127.0.0.1:
// one more is refused with 429 before the upgrade and counted; closing a
// consumer frees its slot.
func TestConsumerCapPerIP(t *testing.T) {
	const perIP = 4
	e := newEnv(t, Config{MaxConsumersPerIP: perIP, MaxConsumers: 100}, 0, 8)
	var cs []*client
	for range perIP {
		cs = append(cs, e.dial(""))
	}
	e.waitConsumers(perIP)
	resp, body := e.refusal(t, nil)
	wantRefusal(t, resp, body, http.StatusTooManyRequests, "RateLimitExceeded")
	// A forged X-Forwarded-For from an untrusted peer changes nothing.
	resp, body = e.refusal(t, http.Header{"X-Forwarded-For": {"203.0.113.9"}})
	wantRefusal(t, resp, body, http.StatusTooManyRequests, "RateLimitExceeded")
	if n := e.hub.m.refused[clientip.RefusePerIP].Get(); n != 2 {
		t.Fatalf("refused{per_ip} = %d, want 2", n)
	}
	if n := e.consumerCount(); n != perIP {
		t.Fatalf("%d consumers connected after the refusals, want %d", n, perIP)
	}

	_ = cs[0].conn.Close()
	waitHeld(t, e, perIP-1)
	c := e.dial("0") // nothing published yet: receives every event
	c.expectSeqs(1, e.publish(1))
	if n := e.hub.m.refused[clientip.RefuseGlobal].Get(); n != 0 {
		t.Fatalf("refused{global} = %d, want 0", n)
	}
}

// TestConsumerCapTrustedProxy checks that behind a trusted proxy each
// X-Forwarded-For client has its own per-IP cap.
func TestConsumerCapTrustedProxy(t *testing.T) {
	e := newEnv(t, Config{MaxConsumersPerIP: 1, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, 0, 8)
	for _, client := range []string{"203.0.113.1", "203.0.113.2"} {
		e.dialWith(ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"X-Forwarded-For": {client}})}, "")
	}
	e.waitConsumers(2)
	resp, body := e.refusal(t, http.Header{"X-Forwarded-For": {"203.0.113.1"}})
	wantRefusal(t, resp, body, http.StatusTooManyRequests, "RateLimitExceeded")
}

// TestConsumerCapGlobal fills MaxConsumers: one more is refused with 503;
// closing a consumer frees its slot. Failed upgrades give their slot back.
func TestConsumerCapGlobal(t *testing.T) {
	const total = 3
	e := newEnv(t, Config{MaxConsumers: total}, 0, 8)
	// Upgrades that fail after admission give their slot back (the
	// release follows the error response, hence the wait).
	for range total + 1 {
		if resp, _ := e.refusal(t, http.Header{"Sec-Websocket-Version": {"99"}}); resp.StatusCode != http.StatusUpgradeRequired {
			t.Fatalf("bad upgrade: status %d, want 426", resp.StatusCode)
		}
		waitHeld(t, e, 0)
	}
	var cs []*client
	for range total {
		cs = append(cs, e.dial(""))
	}
	e.waitConsumers(total)
	resp, body := e.refusal(t, nil)
	wantRefusal(t, resp, body, http.StatusServiceUnavailable, "ServiceUnavailable")
	if n := e.hub.m.refused[clientip.RefuseGlobal].Get(); n != 1 {
		t.Fatalf("refused{global} = %d, want 1", n)
	}
	_ = cs[1].conn.Close()
	waitHeld(t, e, total-1)
	c := e.dial("0") // nothing published yet: receives every event
	c.expectSeqs(1, e.publish(1))
}
