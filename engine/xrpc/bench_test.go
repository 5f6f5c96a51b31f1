package xrpc

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/atrelay/relay/internal/storetest"
	"github.com/atrelay/relay/store"
)

// BenchmarkListRepos1000 serves one full 1000-repo page from a real store.
func BenchmarkListRepos1000(b *testing.B) {
	st := storetest.Open(b)
	h, err := st.CreateHost(store.NewHost{Hostname: "pds.example.com", Status: store.HostActive, AccountLimit: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	e := &env{st: st}
	for i := range 1000 {
		e.commit(b, h.ID, fmt.Sprintf("did:plc:%024d", i), rev1)
	}
	s, err := New(Config{Store: st, Engine: &fakeEngine{}, Resolver: &fakeResolver{}})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/xrpc/com.atproto.sync.listRepos?limit=1000", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}

// BenchmarkGetLatestCommit is the most frequent per-account query.
func BenchmarkGetLatestCommit(b *testing.B) {
	st := storetest.Open(b)
	h, err := st.CreateHost(store.NewHost{Hostname: "pds.example.com", Status: store.HostActive, AccountLimit: 10})
	if err != nil {
		b.Fatal(err)
	}
	e := &env{st: st}
	e.commit(b, h.ID, didA, rev1)
	s, err := New(Config{Store: st, Engine: &fakeEngine{}, Resolver: &fakeResolver{}})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/xrpc/com.atproto.sync.getLatestCommit?did="+didA, nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}
