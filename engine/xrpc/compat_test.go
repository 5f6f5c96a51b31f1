package xrpc

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// publicEnv serves s.Public(cfg) on loopback; the admin stand-in and the
// firehose stand-in echo the client address they were given.
func publicEnv(t *testing.T, trust bool) (*env, *httptest.Server) {
	t.Helper()
	echoAddr := func(tag string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(299)
			_, _ = io.WriteString(w, tag+" "+r.RemoteAddr)
		})
	}
	cfg := Config{Firehose: echoAddr("firehose"), CrawlRequestsPerMinute: 1 << 30}
	if trust {
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}
	e := newEnvConfig(t, cfg)
	ts := httptest.NewServer(e.srv.Public(PublicConfig{Software: "atrelay/1.2.3", Admin: echoAddr("admin")}))
	t.Cleanup(ts.Close)
	return e, ts
}

func do(t *testing.T, method, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestPublicRoutes(t *testing.T) {
	e, ts := publicEnv(t, false)
	const server = "atrelay/1.2.3 (atproto-relay)"
	cases := []struct {
		method, path string
		code         int
		body         string // substring
	}{
		{"GET", "/", 200, "The firehose WebSocket path is at:  /xrpc/com.atproto.sync.subscribeRepos"},
		{"HEAD", "/", 200, ""},
		{"POST", "/", 405, "MethodNotAllowed"},
		{"GET", "/_health", 200, `{"status":"ok"}`},
		{"GET", "/xrpc/_health", 200, `{"status":"ok"}`},
		{"GET", "/xrpc/com.atproto.sync.listHosts", 200, `"hosts":[]`},
		{"GET", "/xrpc/com.atproto.sync.subscribeRepos", 299, "firehose"},
		{"GET", "/admin/pds/list", 299, "admin"},
		{"POST", "/admin", 299, "admin"},
		{"GET", "/administrator", 404, "MethodNotImplemented"},
		{"GET", "/nope", 404, "MethodNotImplemented"},
		{"OPTIONS", "/admin/pds/list", 204, ""},
	}
	for _, c := range cases {
		resp, body := do(t, c.method, ts.URL+c.path, nil)
		if resp.StatusCode != c.code || !strings.Contains(body, c.body) {
			t.Errorf("%s %s: %d %q", c.method, c.path, resp.StatusCode, body)
		}
		if got := resp.Header.Get("Server"); got != server {
			t.Errorf("%s %s: Server header %q, want %q", c.method, c.path, got, server)
		}
	}
	resp, body := do(t, "GET", ts.URL+"/", nil)
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" || !strings.Contains(body, "running atrelay/1.2.3") {
		t.Fatalf("banner: %q %q", ct, body)
	}
	resp, _ = do(t, "OPTIONS", ts.URL+"/admin/pds/list", nil)
	if !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight for the admin API: %v", resp.Header)
	}

	e.eng.set(nil, errors.New("store write failed: disk full"))
	resp, body = do(t, "GET", ts.URL+"/_health", nil)
	if resp.StatusCode != 500 || body != `{"status":"error","msg":"relay cannot serve"}`+"\n" {
		t.Fatalf("unhealthy /_health: %d %q", resp.StatusCode, body)
	}
}

func TestPublicDefaultsAndNoAdmin(t *testing.T) {
	e := newEnv(t, nil)
	ts := httptest.NewServer(e.srv.Public(PublicConfig{}))
	defer ts.Close()
	resp, body := do(t, "GET", ts.URL+"/admin/pds/list", nil)
	if resp.StatusCode != 404 || resp.Header.Get("Server") != "relay (atproto-relay)" || strings.Contains(body, "admin") {
		t.Fatalf("admin path without an admin handler: %d %v %q", resp.StatusCode, resp.Header, body)
	}
}

func TestPublicForwardedFor(t *testing.T) {
	for _, c := range []struct {
		trust bool
		hdr   map[string]string
		want  string // client address the handlers see ("" = the socket's)
	}{
		{true, map[string]string{"X-Forwarded-For": "198.51.100.9, 203.0.113.5"}, "203.0.113.5:0"},
		{true, map[string]string{"X-Forwarded-For": "2001:db8::7"}, "[2001:db8::7]:0"},
		{true, map[string]string{"X-Forwarded-For": "not-an-ip"}, ""},
		{true, nil, ""},
		{false, map[string]string{"X-Forwarded-For": "203.0.113.5"}, ""},
	} {
		_, ts := publicEnv(t, c.trust)
		for _, path := range []string{"/admin/consumers/list", "/xrpc/com.atproto.sync.subscribeRepos"} {
			_, body := do(t, "GET", ts.URL+path, c.hdr)
			_, addr, _ := strings.Cut(body, " ")
			if c.want == "" {
				if !strings.HasPrefix(addr, "127.0.0.1:") {
					t.Errorf("trust=%v %v %s: handler saw %q, want the socket address", c.trust, c.hdr, path, addr)
				}
			} else if addr != c.want {
				t.Errorf("trust=%v %v %s: handler saw %q, want %q", c.trust, c.hdr, path, addr, c.want)
			}
		}
	}
}
