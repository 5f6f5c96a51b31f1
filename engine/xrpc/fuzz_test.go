package xrpc

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/internal/storetest"
	"github.com/atrelay/relay/store"
)

// fuzzServer is a Server over a small populated store, for handler fuzzing
// without sockets.
func fuzzServer(t testing.TB) *Server {
	t.Helper()
	st := storetest.Open(t)
	h, err := st.CreateHost(store.NewHost{Hostname: "pds.example.com", Status: store.HostActive, AccountLimit: 10})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{st: st}
	e.commit(t, h.ID, didA, rev1)
	e.status(t, h.ID, didB, store.StatusDeactivated)
	res := &fakeResolver{ids: map[string]identity.Identity{didA: {DID: didA, PDSHost: "pds.example.com"}}}
	s, err := New(Config{Store: st, Engine: &fakeEngine{}, Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkAnswer fails unless the answer is a redirect, an empty 200, or JSON
// (an XRPC error body for every 4xx/5xx).
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	code := rec.Code
	if code == http.StatusFound || (code == http.StatusOK && rec.Body.Len() == 0) {
		return
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("status %d, body not JSON: %q", code, rec.Body.String())
	}
	if code >= 400 {
		if _, ok := m["error"].(string); !ok {
			t.Fatalf("status %d without error name: %q", code, rec.Body.String())
		}
	}
}

// FuzzQuery sends arbitrary query strings to every GET endpoint.
func FuzzQuery(f *testing.F) {
	for _, q := range []string{
		"", "limit=1", "limit=1000&cursor=1", "limit=0", "cursor=18446744073709551615", "cursor=-1",
		"did=" + didA, "did=" + didB + "&since=" + rev1, "did=%00", "did=did:plc:" + strings.Repeat("a", 3000),
		"hostname=pds.example.com", "hostname=%FF", "since=x&did=" + didA, "did=did:web:localhost%3A1",
	} {
		f.Add(q)
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, q string) {
		for _, ep := range endpointTable() {
			if ep.method != http.MethodGet || ep.nsid == "_health" {
				continue
			}
			req := httptest.NewRequest(http.MethodGet, "/xrpc/"+ep.nsid, nil)
			req.URL.RawQuery = q
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			checkAnswer(t, rec)
		}
	})
}

// FuzzRequestCrawl sends arbitrary bodies to requestCrawl.
func FuzzRequestCrawl(f *testing.F) {
	for _, b := range []string{
		`{"hostname":"pds.example.com"}`, `{}`, ``, `{"hostname":1}`, `{"hostname":"a"}{"x":1}`,
		`null`, `"str"`, `{"hostname":"\u0000"}`, strings.Repeat("[", 10000),
	} {
		f.Add([]byte(b))
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/xrpc/com.atproto.sync.requestCrawl", strings.NewReader(string(body)))
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		checkAnswer(t, rec)
	})
}
