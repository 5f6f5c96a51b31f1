package migrate

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/admin"
)

// refHost is one host of the fake reference relay, with the columns of the
// reference's host table.
type refHost struct {
	ID           uint64
	Hostname     string
	NoSSL        bool
	Status       string // active, idle, offline, throttled, banned
	LastSeq      int64  // -1: none
	AccountLimit int64
	AccountCount int64
}

// fakeRef serves the reference relay's admin, listHosts and metrics
// answers, in its shapes (indigo cmd/relay handlers_admin.go, handlers.go,
// diskpersist's gauge), from the fields below. Safe for concurrent use.
type fakeRef struct {
	password string // static

	mu          sync.Mutex // guards the fields below
	hosts       []refHost
	bans        []string
	takedowns   []string // in uid order
	nextSeq     string   // gauge value as Prometheus writes it; "" omits the gauge
	listMax     int      // pds/list maximum (the reference's 10,000)
	requests    []string // paths asked, in order
	unauthorize bool     // answer every admin call 401
}

func newFakeRef(t *testing.T) (*fakeRef, *httptest.Server) {
	t.Helper()
	f := &fakeRef{password: "ref-secret", listMax: 10_000}
	ts := httptest.NewServer(f)
	t.Cleanup(ts.Close)
	return f, ts
}

// writeJSON answers like echo's c.JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func (f *fakeRef) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.URL.Path)
	if len(r.URL.Path) > 7 && r.URL.Path[:7] == "/admin/" {
		user, pass, ok := r.BasicAuth()
		if !ok || user != "admin" || pass != f.password || f.unauthorize {
			w.Header().Set("WWW-Authenticate", "Basic")
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "Unauthorized"})
			return
		}
	}
	switch r.URL.Path {
	case "/admin/pds/list":
		// The answer's shape is admin.RefHost, which the admin package's
		// reference tests check against the reference relay's declaration.
		out := []admin.RefHost{}
		for _, h := range f.hosts {
			if len(out) == f.listMax {
				break
			}
			out = append(out, admin.RefHost{ID: h.ID, CreatedAt: time.Unix(1700000000, 0).UTC(), Host: h.Hostname, SSL: !h.NoSSL,
				Cursor: h.LastSeq, Registered: h.Status == "active", Blocked: h.Status == "banned",
				RepoCount: h.AccountCount, RepoLimit: h.AccountLimit, UserCount: h.AccountCount,
				PerSecondEventRate: admin.RefRate{Max: -1, WindowSeconds: 1}, PerHourEventRate: admin.RefRate{Max: -1, WindowSeconds: 3600},
				PerDayEventRate: admin.RefRate{Max: -1, WindowSeconds: 86400}})
		}
		writeJSON(w, http.StatusOK, out)
	case "/xrpc/com.atproto.sync.listHosts":
		// Hosts that ever delivered an event (last_seq > 0), by id.
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		after, _ := strconv.ParseUint(r.URL.Query().Get("cursor"), 10, 64)
		type host struct {
			Hostname     string `json:"hostname"`
			Seq          int64  `json:"seq"`
			AccountCount int64  `json:"accountCount"`
			Status       string `json:"status"`
		}
		var out struct {
			Cursor *string `json:"cursor,omitempty"`
			Hosts  []host  `json:"hosts"`
		}
		out.Hosts = []host{}
		var last uint64
		for _, h := range f.hosts {
			if h.ID > after && h.LastSeq > 0 && len(out.Hosts) < limit {
				out.Hosts = append(out.Hosts, host{h.Hostname, h.LastSeq, h.AccountCount, h.Status})
				last = h.ID
			}
		}
		if len(out.Hosts) >= limit && len(out.Hosts) > 1 {
			c := strconv.FormatUint(last, 10)
			out.Cursor = &c
		}
		writeJSON(w, http.StatusOK, out)
	case "/admin/subs/listDomainBans":
		writeJSON(w, http.StatusOK, map[string][]string{"banned_domains": append([]string{}, f.bans...)})
	case "/admin/repo/takedowns":
		// uid i+1 for takedowns[i]; 500 per page, cursor omitted when 0.
		cursor, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
		type page struct {
			DIDs   []string `json:"dids"`
			Cursor int64    `json:"cursor,omitempty"`
		}
		p := page{DIDs: []string{}}
		for i := cursor; i < len(f.takedowns) && len(p.DIDs) < 500; i++ {
			p.DIDs = append(p.DIDs, f.takedowns[i])
			p.Cursor = int64(i + 1)
		}
		if len(p.DIDs) < 500 {
			p.Cursor = 0
		}
		writeJSON(w, http.StatusOK, p)
	case "/metrics":
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintln(w, "# HELP go_goroutines Number of goroutines that currently exist.")
		fmt.Fprintln(w, "# TYPE go_goroutines gauge")
		fmt.Fprintln(w, "go_goroutines 42")
		if f.nextSeq != "" {
			fmt.Fprintln(w, "# HELP disk_persister_current_seq Current sequence number to be used for next persisted event")
			fmt.Fprintln(w, "# TYPE disk_persister_current_seq gauge")
			fmt.Fprintln(w, "disk_persister_current_seq "+f.nextSeq)
		}
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "Not Found"})
	}
}
