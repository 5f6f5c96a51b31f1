package migrate

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/engine/relay"
	"github.com/atrelay/relay/store"
)

// TestMigratedHostsResumeFromReferenceCursors migrates a host from the
// fake reference, starts the relay engine on the migrated store, and
// checks the engine asks the host's PDS for subscribeRepos from the
// reference's cursor: no event the reference had not persisted is
// skipped, none before it is fetched again.
func TestMigratedHostsResumeFromReferenceCursors(t *testing.T) {
	// The PDS: records the subscribeRepos cursors it is asked for and
	// refuses the upgrade (the engine retries; one request is enough).
	var mu sync.Mutex
	var cursors []string
	asked := make(chan struct{}, 1)
	pds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/xrpc/com.atproto.sync.subscribeRepos" {
			mu.Lock()
			cursors = append(cursors, r.URL.Query().Get("cursor"))
			mu.Unlock()
			select {
			case asked <- struct{}{}:
			default:
			}
		}
		http.Error(w, "not now", http.StatusServiceUnavailable)
	}))
	defer pds.Close()
	pdsHost := "localhost:" + pds.URL[strings.LastIndexByte(pds.URL, ':')+1:]

	f, ts := newFakeRef(t)
	f.mu.Lock()
	f.hosts = []refHost{
		{ID: 1, Hostname: pdsHost, NoSSL: true, Status: "active", LastSeq: 4_242_424, AccountLimit: 100, AccountCount: 9},
		// An idle host is migrated but not subscribed, like in the reference.
		{ID: 2, Hostname: "idle.example.com", Status: "idle", LastSeq: -1, AccountLimit: 100},
	}
	f.nextSeq = "1000"
	f.mu.Unlock()
	dir := t.TempDir()
	if out, err := run(t, ts.URL, dir); err != nil {
		t.Fatalf("migration: %v\n%s", err, out)
	}

	st := openTestStore(t, dir)
	defer st.Close()
	ids := identity.New(identity.Config{PLCURL: "http://127.0.0.1:1", AllowInsecureHosts: true})
	defer ids.Close()
	hub, err := firehose.NewHub(store.FirehoseLog{St: st}, firehose.Config{RingBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	r, err := relay.New(relay.Config{AllowInsecureHosts: true, Workers: 1}, relay.Deps{Store: st, Identity: ids, Hub: hub})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	select {
	case <-asked:
	case <-time.After(10 * time.Second):
		t.Fatal("the relay never connected to the migrated host")
	}
	mu.Lock()
	first := cursors[0]
	mu.Unlock()
	if first != "4242424" {
		t.Fatalf("subscribeRepos asked from cursor %q, want the reference's 4242424", first)
	}
	for _, h := range r.Hosts() {
		if h.Hostname == "idle.example.com" && h.Status != store.HostIdle {
			t.Fatalf("idle host = %+v", h.Host)
		}
	}
	if got := st.NewestSeq(); got != 1000+DefaultSeqMargin-1 {
		t.Fatalf("NewestSeq = %d", got)
	}
}
