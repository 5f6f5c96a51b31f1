package xrpc

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// TestRequestCrawlPerClientLimit checks the per-client requestCrawl limit
// over a real socket: past the burst a client gets 429 RateLimitExceeded
// with Retry-After and the engine (whose probe makes outbound requests) is
// not called; X-Forwarded-For is ignored from an untrusted peer and names
// the client behind a trusted proxy.
func TestRequestCrawlPerClientLimit(t *testing.T) {
	const burst = 3
	crawl := func(e *env, xff string) response {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, e.ts.URL+"/xrpc/com.atproto.sync.requestCrawl",
			strings.NewReader(`{"hostname":"pds.example.com"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return response{code: resp.StatusCode, header: resp.Header}
	}
	calls := func(e *env) int {
		e.eng.mu.Lock()
		defer e.eng.mu.Unlock()
		return len(e.eng.crawled)
	}

	t.Run("peer address", func(t *testing.T) {
		e := newEnvConfig(t, Config{CrawlRequestsPerMinute: burst})
		for i := range burst {
			if r := crawl(e, "203.0.113."+strconv.Itoa(1+i)); r.code != http.StatusOK {
				t.Fatalf("request %d: status %d", i, r.code)
			}
		}
		// A forged header does not make a new client of an untrusted peer.
		r := crawl(e, "198.51.100.99")
		if r.code != http.StatusTooManyRequests || r.header.Get("Retry-After") != "20" {
			t.Fatalf("over the limit: status %d Retry-After %q, want 429 and 20", r.code, r.header.Get("Retry-After"))
		}
		if n := calls(e); n != burst {
			t.Fatalf("engine called %d times, want %d", n, burst)
		}
		// Development hosts (refused by the engine unless its development
		// switch is on, then probed on this machine) are not limited.
		for _, h := range []string{"localhost:2480", "http://LOCALHOST:2481", "ws://localhost:2482/"} {
			req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/xrpc/com.atproto.sync.requestCrawl",
				strings.NewReader(`{"hostname":"`+h+`"}`))
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("requestCrawl %s over the limit: status %d, want 200", h, resp.StatusCode)
			}
		}
	})

	t.Run("trusted proxy", func(t *testing.T) {
		e := newEnvConfig(t, Config{CrawlRequestsPerMinute: burst,
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
		for i := range burst {
			if r := crawl(e, "203.0.113.1"); r.code != http.StatusOK {
				t.Fatalf("request %d: status %d", i, r.code)
			}
		}
		if r := crawl(e, "203.0.113.1"); r.code != http.StatusTooManyRequests {
			t.Fatalf("client over its limit behind the proxy: status %d, want 429", r.code)
		}
		if r := crawl(e, "203.0.113.2"); r.code != http.StatusOK {
			t.Fatalf("another client behind the same proxy: status %d, want 200", r.code)
		}
		// The /64 is one client: a new address in it does not reset the limit.
		for i := range burst {
			crawl(e, "2001:db8:0:1::"+strconv.Itoa(1+i))
		}
		if r := crawl(e, "2001:db8:0:1::ffff"); r.code != http.StatusTooManyRequests {
			t.Fatalf("new address in a limited /64: status %d, want 429", r.code)
		}
		if n := calls(e); n != 2*burst+1 {
			t.Fatalf("engine called %d times, want %d", n, 2*burst+1)
		}
	})
}
