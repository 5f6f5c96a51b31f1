package xrpc

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/internal/storetest"
	"github.com/atrelay/relay/store"
)

func TestListHostsPaging(t *testing.T) {
	e := newEnv(t, nil)
	names := []string{"a.example.com", "c.example.com", "b.example.com", "d.example.com", "e.example.com"}
	for _, n := range names {
		e.host(t, n)
	}
	h, _ := e.st.HostByName("c.example.com")
	if _, err := e.st.UpdateHost(h.ID, func(h *store.Host) { h.Status = store.HostBanned; h.Cursor = 42 }); err != nil {
		t.Fatal(err)
	}
	e.commit(t, h.ID, didA, rev1)
	known := hostStatusValues(t)
	mainSchema := outputSchema(t, "listHosts", "main")
	hostSchema := outputSchema(t, "listHosts", "host")
	for _, limit := range []int{1, 2, 5, 200} {
		t.Run(fmt.Sprint("limit=", limit), func(t *testing.T) {
			var got []map[string]any
			cursor := ""
			for pages := 0; pages <= len(names)+1; pages++ {
				q := url.Values{"limit": {fmt.Sprint(limit)}}
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				m := decodeOK(t, e.get(t, "/xrpc/com.atproto.sync.listHosts?"+q.Encode()))
				checkShape(t, m, mainSchema, known)
				for _, x := range m["hosts"].([]any) {
					obj := x.(map[string]any)
					checkShape(t, obj, hostSchema, known)
					got = append(got, obj)
				}
				c, ok := m["cursor"].(string)
				if !ok {
					break
				}
				cursor = c
			}
			if len(got) != len(names) {
				t.Fatalf("got %d hosts, want %d", len(got), len(names))
			}
			for i, n := range names { // first-seen order
				if got[i]["hostname"] != n {
					t.Fatalf("host %d = %v, want %s", i, got[i], n)
				}
			}
			c := got[1]
			if c["status"] != "banned" || c["seq"] != float64(42) || c["accountCount"] != float64(1) {
				t.Fatalf("c.example.com = %v", c)
			}
		})
	}
	for _, q := range []string{"limit=0", "limit=1001", "cursor=abc", "cursor=4294967296"} {
		wantError(t, e.get(t, "/xrpc/com.atproto.sync.listHosts?"+q), 400, "InvalidRequest")
	}
}

func TestGetHostStatus(t *testing.T) {
	e := newEnv(t, nil)
	h := e.host(t, "pds.example.com")
	e.commit(t, h.ID, didA, rev1)
	e.commit(t, h.ID, didB, rev1)
	schema := outputSchema(t, "getHostStatus", "main")
	for _, q := range []string{"hostname=pds.example.com", "hostname=PDS.Example.COM"} {
		m := decodeOK(t, e.get(t, "/xrpc/com.atproto.sync.getHostStatus?"+q))
		checkShape(t, m, schema, hostStatusValues(t))
		if m["hostname"] != "pds.example.com" || m["accountCount"] != float64(2) || m["status"] != "active" || m["seq"] != float64(0) {
			t.Fatalf("got %v", m)
		}
	}
	wantError(t, e.get(t, "/xrpc/com.atproto.sync.getHostStatus?hostname=other.example.com"), 404, "HostNotFound")
	wantError(t, e.get(t, "/xrpc/com.atproto.sync.getHostStatus"), 400, "InvalidRequest")
	wantError(t, e.get(t, "/xrpc/com.atproto.sync.getHostStatus?hostname="+strings.Repeat("a", 300)), 400, "InvalidRequest")
}

func TestRequestCrawl(t *testing.T) {
	e := newEnv(t, nil)
	for _, nsid := range []string{"com.atproto.sync.requestCrawl", "com.atproto.sync.notifyOfUpdate"} {
		t.Run(nsid, func(t *testing.T) {
			e.eng.set(nil, nil)
			r := e.do(t, http.MethodPost, "/xrpc/"+nsid, `{"hostname":" pds.example.com "}`)
			if r.code != http.StatusOK || len(r.body) != 0 {
				t.Fatalf("status %d body %q", r.code, r.body)
			}
			e.eng.mu.Lock()
			last := e.eng.crawled[len(e.eng.crawled)-1]
			e.eng.mu.Unlock()
			if last != "pds.example.com" {
				t.Fatalf("engine got %q", last)
			}
			cases := []struct {
				err  error
				code int
				name string
			}{
				{ErrBadHostname, 400, "BadRequest"},
				{ErrHostBanned, 403, "HostBanned"},
				{ErrHostNotFound, 400, "HostNotFound"},
				{ErrNewHostLimit, 429, "RateLimitExceeded"},
				{ErrCrawlDisabled, 403, "Forbidden"},
				{errors.New("boom"), 500, "InternalServerError"},
			}
			for _, c := range cases {
				e.eng.set(fmt.Errorf("engine: %w", c.err), nil)
				wantError(t, e.do(t, http.MethodPost, "/xrpc/"+nsid, `{"hostname":"pds.example.com"}`), c.code, c.name)
			}
			e.eng.set(nil, nil)
			wantError(t, e.do(t, http.MethodPost, "/xrpc/"+nsid, `{"hostname":""}`), 400, "BadRequest")
			wantError(t, e.do(t, http.MethodPost, "/xrpc/"+nsid, `{}`), 400, "BadRequest")
			wantError(t, e.do(t, http.MethodPost, "/xrpc/"+nsid, `{"hostname":`), 400, "InvalidRequest")
			wantError(t, e.do(t, http.MethodPost, "/xrpc/"+nsid, `[1]`), 400, "InvalidRequest")
			wantError(t, e.do(t, http.MethodPost, "/xrpc/"+nsid, ""), 400, "InvalidRequest")
			wantError(t, e.do(t, http.MethodPost, "/xrpc/"+nsid, `{"hostname":"`+strings.Repeat("a", 10000)+`"}`), 413, "InvalidRequest")
			wantError(t, e.do(t, http.MethodGet, "/xrpc/"+nsid, ""), 405, "MethodNotAllowed")
		})
	}
}

func TestMethodsAndCORS(t *testing.T) {
	e := newEnv(t, nil)
	for _, ep := range endpointTable() {
		if ep.method != http.MethodGet {
			continue
		}
		r := e.do(t, http.MethodPost, "/xrpc/"+ep.nsid, `{}`)
		wantError(t, r, http.StatusMethodNotAllowed, "MethodNotAllowed")
		if r.header.Get("Allow") != http.MethodGet {
			t.Errorf("%s: Allow %q", ep.nsid, r.header.Get("Allow"))
		}
		if r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS header", ep.nsid)
		}
	}
	r := e.do(t, http.MethodOptions, "/xrpc/com.atproto.sync.listRepos", "")
	if r.code != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "GET") {
		t.Fatalf("preflight: %d %v", r.code, r.header)
	}
	wantError(t, e.get(t, "/xrpc/com.atproto.sync.getBlocks"), 404, "MethodNotImplemented")
	wantError(t, e.get(t, "/"), 404, "MethodNotImplemented")
}

func TestHealth(t *testing.T) {
	e := newEnv(t, nil)
	m := decodeOK(t, e.get(t, "/xrpc/_health"))
	if m["status"] != "ok" {
		t.Fatalf("got %v", m)
	}
	e.eng.set(nil, errors.New("store: an earlier write failed"))
	r := e.get(t, "/xrpc/_health")
	if r.code != http.StatusServiceUnavailable || !strings.Contains(string(r.body), `"status":"error"`) {
		t.Fatalf("unhealthy: %d %s", r.code, r.body)
	}
}

func TestSubscribeReposMounted(t *testing.T) {
	fh := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Firehose", r.URL.Query().Get("cursor"))
		w.WriteHeader(http.StatusTeapot)
	})
	e := newEnv(t, fh)
	r := e.get(t, "/xrpc/com.atproto.sync.subscribeRepos?cursor=12")
	if r.code != http.StatusTeapot || r.header.Get("X-Firehose") != "12" {
		t.Fatalf("firehose not mounted: %d %v", r.code, r.header)
	}
	e2 := newEnv(t, nil)
	wantError(t, e2.get(t, "/xrpc/com.atproto.sync.subscribeRepos"), 501, "MethodNotImplemented")
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, nil)
	e.get(t, "/xrpc/com.atproto.sync.listRepos")
	e.get(t, "/xrpc/com.atproto.sync.listRepos?limit=0")
	e.get(t, "/xrpc/com.atproto.sync.listRepos?limit=0")
	e.get(t, "/nowhere")
	var b strings.Builder
	e.srv.Metrics().WritePrometheus(&b)
	out := b.String()
	for _, line := range []string{
		`relay_xrpc_requests_total{endpoint="com.atproto.sync.listRepos",class="2xx"} 1`,
		`relay_xrpc_requests_total{endpoint="com.atproto.sync.listRepos",class="4xx"} 2`,
		`relay_xrpc_requests_total{endpoint="com.atproto.sync.listRepos",class="5xx"} 0`,
		`relay_xrpc_requests_total{endpoint="other",class="4xx"} 1`,
		`relay_xrpc_requests_total{endpoint="com.atproto.sync.getRepo",class="3xx"} 0`,
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}
}

func TestNewRequiresDeps(t *testing.T) {
	st := storetest.Open(t)
	for _, cfg := range []Config{
		{},
		{Store: st},
		{Store: st, Engine: &fakeEngine{}},
		{Store: st, Resolver: &fakeResolver{}},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrBadConfig) {
			t.Errorf("New(%+v) = %v, want ErrBadConfig", cfg, err)
		}
	}
	set := metrics.NewSet()
	s, err := New(Config{Store: st, Engine: &fakeEngine{}, Resolver: &fakeResolver{}, Metrics: set})
	if err != nil || s.Metrics() != set {
		t.Fatalf("New: %v", err)
	}
}
