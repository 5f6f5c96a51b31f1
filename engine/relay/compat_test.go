package relay

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/atrelay/relay/store"
)

// TestSetNewHostsPerDay changes the public new-host bound at run time and
// checks requestCrawl obeys the new value.
func TestSetNewHostsPerDay(t *testing.T) {
	// Two fake PDS hosts answering describeServer (and nothing else).
	var names []string
	for range 2 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/xrpc/com.atproto.server.describeServer" {
				_, _ = w.Write([]byte(`{"did":"did:web:x"}`))
				return
			}
			http.NotFound(w, r)
		}))
		t.Cleanup(srv.Close)
		names = append(names, "localhost:"+srv.URL[strings.LastIndexByte(srv.URL, ':')+1:])
	}
	cfg := testConfig()
	cfg.NewHostsPerDay = 5
	h := startRelayPLC(t, "", nil, t.TempDir(), cfg, store.NoSync, 1<<20, nil)
	defer h.stop()
	ctx := context.Background()
	if got := h.r.NewHostsPerDay(); got != 5 {
		t.Fatalf("NewHostsPerDay = %d, want the configured 5", got)
	}
	if err := h.r.SetNewHostsPerDay(-1); !errors.Is(err, ErrBadLimit) {
		t.Fatalf("negative limit: %v", err)
	}
	if err := h.r.SetNewHostsPerDay(1); err != nil || h.r.NewHostsPerDay() != 1 {
		t.Fatalf("SetNewHostsPerDay(1): %v, now %d", err, h.r.NewHostsPerDay())
	}
	if err := h.r.RequestCrawl(ctx, names[0]); err != nil {
		t.Fatalf("first crawl: %v", err)
	}
	if err := h.r.RequestCrawl(ctx, names[1]); !errors.Is(err, ErrNewHostLimit) {
		t.Fatalf("second crawl under limit 1: %v", err)
	}
	if err := h.r.SetNewHostsPerDay(2); err != nil {
		t.Fatal(err)
	}
	if err := h.r.RequestCrawl(ctx, names[1]); err != nil {
		t.Fatalf("second crawl after raising the limit: %v", err)
	}
}
