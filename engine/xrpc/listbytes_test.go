package xrpc

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"
)

// TestListRequestBytes measures what one list request of maxLimit entries
// allocates (an upper bound of what it holds at once), over a store with
// more accounts and hosts than a page: ListRequestBytes, with which a
// relay's memory budget counts MaxListsInFlight of them, must cover it.
// The response is recorded whole in memory, so the figure over-counts the
// 4 KiB a real connection writes through.
func TestListRequestBytes(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates beside the code measured")
	}
	e := newEnv(t, nil)
	var hostID = e.host(t, "pds.example").ID
	for i := range maxLimit + 100 {
		e.commit(t, hostID, fmt.Sprintf("did:plc:%024d", i), "3l2tlwzoukc2y")
	}
	for i := range maxLimit + 100 {
		e.host(t, fmt.Sprintf("pds-%d.example", i))
	}
	for _, path := range []string{"/xrpc/com.atproto.sync.listRepos?limit=1000", "/xrpc/com.atproto.sync.listHosts?limit=1000"} {
		most := uint64(1 << 62)
		for range 10 {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			w := httptest.NewRecorder()
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			e.srv.ServeHTTP(w, req)
			runtime.ReadMemStats(&after)
			if w.Code != http.StatusOK {
				t.Fatalf("%s: %d %s", path, w.Code, w.Body.String())
			}
			most = min(most, after.TotalAlloc-before.TotalAlloc)
		}
		t.Logf("%s: %d B (%.2f MiB) allocated; ListRequestBytes is %.2f MiB", path, most, float64(most)/(1<<20), float64(ListRequestBytes)/(1<<20))
		if most > ListRequestBytes {
			t.Errorf("%s allocates %d B > ListRequestBytes %d", path, most, ListRequestBytes)
		}
	}
}

// TestListsInFlight: with every list turn taken, a list request waits up
// to listWait and then gets 503 with Retry-After, other methods are
// served meanwhile, and a list request that finds a turn is served.
func TestListsInFlight(t *testing.T) {
	was := listWait
	listWait = 100 * time.Millisecond
	defer func() { listWait = was }()
	e := newEnvConfig(t, Config{CrawlRequestsPerMinute: 1 << 30, MaxListsInFlight: 1})
	e.commit(t, e.host(t, "pds.example").ID, "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "3l2tlwzoukc2y")
	e.srv.lists <- struct{}{} // a list request in progress
	for _, path := range []string{"/xrpc/com.atproto.sync.listRepos", "/xrpc/com.atproto.sync.listHosts"} {
		r := e.get(t, path)
		wantError(t, r, http.StatusServiceUnavailable, "ServiceUnavailable")
		if r.header.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", path)
		}
	}
	if r := e.get(t, "/xrpc/com.atproto.sync.getRepoStatus?did=did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"); r.code != http.StatusOK {
		t.Fatalf("getRepoStatus beside a full list queue: %d %s", r.code, r.body)
	}
	<-e.srv.lists
	if r := e.get(t, "/xrpc/com.atproto.sync.listRepos"); r.code != http.StatusOK {
		t.Fatalf("listRepos with a free turn: %d %s", r.code, r.body)
	}
	if n := len(e.srv.lists); n != 0 {
		t.Fatalf("%d list turns held after the requests ended", n)
	}
}
