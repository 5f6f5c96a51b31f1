package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/relay/internal/testutil"
	"github.com/atrelay/relay/store"
)

// The reference relay's admin answers, as its own handlers declare them
// (indigo cmd/relay, handlers_admin.go and relay/broadcast.go at
// v0.0.0-20260605210604-af2fec94f34c), written out here independently of
// the package's types so a drift in either shows.
type (
	refRateLimit struct {
		Max    float64 `json:"Max"`
		Window float64 `json:"Window"`
	}
	refHostInfo struct {
		ID                     uint64
		CreatedAt              time.Time
		Host                   string
		SSL                    bool
		Cursor                 int64
		Registered             bool
		Blocked                bool
		CrawlRateLimit         float64
		RepoCount              int64
		RepoLimit              int64
		HasActiveConnection    bool
		EventsSeenSinceStartup uint64
		PerSecondEventRate     refRateLimit
		PerHourEventRate       refRateLimit
		PerDayEventRate        refRateLimit
		UserCount              int64
	}
	refTakedowns struct {
		DIDs   []string `json:"dids"`
		Cursor int64    `json:"cursor,omitempty"`
	}
	refConsumerInfo struct {
		ID             uint64    `json:"id"`
		RemoteAddr     string    `json:"remote_addr"`
		UserAgent      string    `json:"user_agent"`
		EventsConsumed uint64    `json:"events_consumed"`
		ConnectedAt    time.Time `json:"connected_at"`
	}
	refBannedDomains struct {
		BannedDomains []string `json:"banned_domains"`
	}
)

// refKeys are the exact JSON keys of one reference pds/list entry.
var refKeys = []string{"Blocked", "CrawlRateLimit", "CreatedAt", "Cursor", "EventsSeenSinceStartup",
	"HasActiveConnection", "Host", "ID", "PerDayEventRate", "PerHourEventRate", "PerSecondEventRate",
	"Registered", "RepoCount", "RepoLimit", "SSL", "UserCount"}

// refCall sends a request the way the reference's clients do (HTTP Basic
// admin:<password>, JSON body when there is one) and returns status and
// body.
func (e *env) refCall(t *testing.T, password, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", password)
	req.Header.Set("Content-Type", "application/json")
	resp, b := testutil.Do(t, req)
	return resp.StatusCode, b
}

// strict decodes b into v, refusing fields v does not declare.
func strict(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %s into %T: %v", b, v, err)
	}
}

// wantOK expects the reference's action answer.
func wantOK(t *testing.T, what string, code int, body []byte) {
	t.Helper()
	if code != http.StatusOK || string(body) != `{"success":"true"}`+"\n" {
		t.Fatalf("%s: %d %s", what, code, body)
	}
}

// wantRefError expects the reference's admin error: the status and one
// "error" string.
func wantRefError(t *testing.T, what string, code int, body []byte, wantCode int, wantSub string) {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(body, &m); err != nil || code != wantCode || len(m) != 1 || !strings.Contains(m["error"], wantSub) {
		t.Fatalf("%s: %d %s; want %d {\"error\": …%s…}", what, code, body, wantCode, wantSub)
	}
}

// newRefEnv is an admin server accepting two passwords, as the reference
// does with a comma-separated RELAY_ADMIN_PASSWORD.
func newRefEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	srv, err := New(Config{Store: e.st, Engine: e.eng, Tokens: ParseTokens("old-secret, new-secret")})
	if err != nil {
		t.Fatal(err)
	}
	e.ts.Config.Handler = srv
	return e
}

func TestReferenceAuth(t *testing.T) {
	e := newRefEnv(t)
	for _, pw := range []string{"old-secret", "new-secret"} {
		code, body := e.refCall(t, pw, http.MethodGet, "/admin/subs/getEnabled", nil)
		if code != 200 || string(body) != `{"enabled":true}`+"\n" {
			t.Fatalf("password %q: %d %s", pw, code, body)
		}
	}
	for _, pw := range []string{"", "old-secret,new-secret", "new", testToken} {
		code, body := e.refCall(t, pw, http.MethodGet, "/admin/subs/getEnabled", nil)
		if code != 401 || string(body) != `{"error":"Unauthorized"}`+"\n" {
			t.Fatalf("password %q: %d %s", pw, code, body)
		}
	}
	code, hdr, _ := e.raw(t, http.MethodGet, "/admin/pds/list", "", "")
	if code != 401 || !slices.ContainsFunc(hdr.Values("WWW-Authenticate"), func(v string) bool { return strings.HasPrefix(v, "Basic") }) {
		t.Fatalf("no credentials: %d %v", code, hdr)
	}
	if _, err := New(Config{Store: e.st, Engine: e.eng, Tokens: ParseTokens(" , ")}); err != ErrNoToken {
		t.Fatalf("only blank tokens: %v", err)
	}
}

// TestReferenceHostShapes drives the host endpoints with the requests the
// reference's admin UI and goat send and decodes the answers into the
// reference's types.
func TestReferenceHostShapes(t *testing.T) {
	e := newRefEnv(t)
	a := e.mkHost(t, "a.example.com")
	b := e.mkHost(t, "localhost:2583")
	e.mkAccounts(t, a.ID, didA, didB)
	if _, err := e.st.UpdateHost(a.ID, func(h *store.Host) { h.Cursor, h.Events = 42, 7 }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.UpdateHost(b.ID, func(h *store.Host) { h.Status = store.HostBanned }); err != nil {
		t.Fatal(err)
	}
	e.eng.conns = []string{"a.example.com"}

	code, body := e.refCall(t, "new-secret", http.MethodGet, "/admin/pds/list", nil)
	var raw []map[string]any
	if err := json.Unmarshal(body, &raw); code != 200 || err != nil || len(raw) != 2 {
		t.Fatalf("pds/list: %d %s", code, body)
	}
	for i, m := range raw {
		if keys := slices.Sorted(maps.Keys(m)); !slices.Equal(keys, refKeys) {
			t.Fatalf("pds/list entry %d has keys %v, want the reference's %v", i, keys, refKeys)
		}
	}
	var hosts []refHostInfo
	strict(t, body, &hosts)
	ha, hb := hosts[0], hosts[1]
	rate := func(w float64) refRateLimit { return refRateLimit{Max: -1, Window: w} }
	if ha.ID != uint64(a.ID) || ha.Host != "a.example.com" || !ha.SSL || ha.Cursor != 42 || !ha.Registered ||
		ha.Blocked || ha.RepoCount != 2 || ha.UserCount != 2 || ha.RepoLimit != 100 || !ha.HasActiveConnection ||
		ha.EventsSeenSinceStartup != 7 || ha.CreatedAt.IsZero() || ha.PerSecondEventRate != rate(1) ||
		ha.PerHourEventRate != rate(3600) || ha.PerDayEventRate != rate(86400) {
		t.Fatalf("host a = %+v", ha)
	}
	if hb.Host != "localhost:2583" || hb.SSL || hb.Cursor != -1 || hb.Registered || !hb.Blocked || hb.HasActiveConnection {
		t.Fatalf("host b = %+v", hb)
	}

	// The admin UI's "update rate limits": it posts back every rate it
	// was shown (-1 here) with the new repo_limit.
	code, body = e.refCall(t, "old-secret", http.MethodPost, "/admin/pds/changeLimits", map[string]any{
		"host": "a.example.com", "per_second": ha.PerSecondEventRate.Max, "per_hour": ha.PerHourEventRate.Max,
		"per_day": ha.PerDayEventRate.Max, "repo_limit": 500,
	})
	wantOK(t, "changeLimits from the UI", code, body)
	if got := e.eng.lastCall(); got != "limits a.example.com accounts=500" {
		t.Fatalf("changeLimits reached the engine as %q", got)
	}
	// goat's `relay admin host config --account-limit`.
	code, body = e.refCall(t, "old-secret", http.MethodPost, "/admin/pds/changeLimits", map[string]any{"host": "a.example.com", "repo_limit": 9})
	wantOK(t, "changeLimits from goat", code, body)
	code, body = e.refCall(t, "old-secret", http.MethodPost, "/admin/pds/changeLimits", map[string]any{"host": "a.example.com"})
	wantRefError(t, "changeLimits without a limit", code, body, 400, "missing repo_limit")
	code, body = e.refCall(t, "old-secret", http.MethodPost, "/admin/pds/changeLimits", map[string]any{"host": "a.example.com", "per_second": 1.5})
	wantRefError(t, "fractional per_second", code, body, 400, "per_second")
	code, body = e.refCall(t, "old-secret", http.MethodPost, "/admin/pds/changeLimits", map[string]any{"host": "nope.example.com", "repo_limit": 1})
	wantRefError(t, "changeLimits of an unknown host", code, body, 404, "nope.example.com")

	// Query-parameter actions, bodiless, as the UI and goat send them.
	for _, c := range []struct{ path, call string }{
		{"/admin/subs/killUpstream?host=a.example.com&block=true", "kill a.example.com true"},
		{"/admin/pds/unblock?host=localhost:2583", "unban-host localhost:2583"},
		{"/admin/pds/block?host=localhost:2583", "ban-host localhost:2583"},
	} {
		code, body = e.refCall(t, "new-secret", http.MethodPost, c.path, nil)
		wantOK(t, c.path, code, body)
		if got := e.eng.lastCall(); got != c.call {
			t.Fatalf("%s reached the engine as %q", c.path, got)
		}
	}
	code, body = e.refCall(t, "new-secret", http.MethodPost, "/admin/subs/killUpstream?host=a.example.com", nil)
	wantRefError(t, "killUpstream of an unconnected host", code, body, 400, "no active connection")
	code, body = e.refCall(t, "new-secret", http.MethodPost, "/admin/pds/block?host=", nil)
	wantRefError(t, "block without host", code, body, 400, "must pass a valid hostname")

	// requestCrawl answers errors like the XRPC procedure.
	code, body = e.refCall(t, "new-secret", http.MethodPost, "/admin/pds/requestCrawl", map[string]any{"hostname": "new.example.com"})
	wantOK(t, "requestCrawl", code, body)
	code, body = e.refCall(t, "new-secret", http.MethodPost, "/admin/pds/requestCrawl", map[string]any{"hostname": "bad host"})
	var xe struct{ Error, Message string }
	if err := json.Unmarshal(body, &xe); err != nil || code != 400 || xe.Error != "BadRequest" || xe.Message == "" {
		t.Fatalf("requestCrawl of a bad host: %d %s", code, body)
	}

	e.eng.conns = []string{"a.example.com"}
	code, body = e.refCall(t, "new-secret", http.MethodGet, "/admin/subs/getUpstreamConns", nil)
	var conns []string
	strict(t, body, &conns)
	if code != 200 || !slices.Equal(conns, []string{"a.example.com"}) {
		t.Fatalf("getUpstreamConns: %d %s", code, body)
	}
	code, body = e.refCall(t, "new-secret", http.MethodGet, "/admin/pds/list?format=bogus", nil)
	wantRefError(t, "unknown format", code, body, 400, "format")
	code, body = e.refCall(t, "new-secret", http.MethodGet, "/admin/no/such/path", nil)
	wantRefError(t, "unknown path", code, body, 404, "Not Found")
}

func TestReferenceSubsShapes(t *testing.T) {
	e := newRefEnv(t)
	code, body := e.refCall(t, "old-secret", http.MethodPost, "/admin/subs/setEnabled?enabled=false", nil)
	wantOK(t, "setEnabled", code, body)
	code, body = e.refCall(t, "old-secret", http.MethodGet, "/admin/subs/getEnabled", nil)
	if code != 200 || string(body) != `{"enabled":false}`+"\n" {
		t.Fatalf("getEnabled: %d %s", code, body)
	}
	code, body = e.refCall(t, "old-secret", http.MethodPost, "/admin/subs/setEnabled?enabled=maybe", nil)
	wantRefError(t, "setEnabled=maybe", code, body, 400, "enabled")

	code, body = e.refCall(t, "old-secret", http.MethodGet, "/admin/subs/perDayLimit", nil)
	var lim map[string]int64
	strict(t, body, &lim)
	if code != 200 || len(lim) != 1 || lim["limit"] != 50 {
		t.Fatalf("perDayLimit: %d %s", code, body)
	}
	code, body = e.refCall(t, "old-secret", http.MethodPost, "/admin/subs/setPerDayLimit?limit=12", nil)
	wantOK(t, "setPerDayLimit", code, body)
	if e.eng.NewHostsPerDay() != 12 {
		t.Fatalf("per-day limit is %d after setPerDayLimit 12", e.eng.NewHostsPerDay())
	}
	for _, q := range []string{"", "?limit=x", "?limit=-1"} {
		code, body = e.refCall(t, "old-secret", http.MethodPost, "/admin/subs/setPerDayLimit"+q, nil)
		wantRefError(t, "setPerDayLimit"+q, code, body, 400, "limit")
	}

	// Domain bans: goat sends {"domain"}, the reference decodes {"Domain"}.
	for _, body := range []map[string]any{{"domain": "spam.example"}, {"Domain": "evil.example"}} {
		code, b := e.refCall(t, "old-secret", http.MethodPost, "/admin/subs/banDomain", body)
		wantOK(t, "banDomain", code, b)
	}
	code, body = e.refCall(t, "old-secret", http.MethodPost, "/admin/subs/unbanDomain", map[string]any{"domain": "spam.example"})
	wantOK(t, "unbanDomain", code, body)
	code, body = e.refCall(t, "old-secret", http.MethodGet, "/admin/subs/listDomainBans", nil)
	var bans refBannedDomains
	strict(t, body, &bans)
	if code != 200 || !slices.Equal(bans.BannedDomains, []string{"evil.example"}) {
		t.Fatalf("listDomainBans: %d %s", code, body)
	}

	// Consumers, in the reference's shape: ordinal ids, address without port.
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.eng.consumers = []Consumer{
		{RemoteAddr: "192.0.2.7:4000", UserAgent: "jetstream", FramesSent: 12, ConnectedAt: at},
		{RemoteAddr: "[2001:db8::1]:443", UserAgent: "x", ConnectedAt: at.Add(time.Second)},
	}
	code, body = e.refCall(t, "old-secret", http.MethodGet, "/admin/consumers/list", nil)
	var cs []refConsumerInfo
	strict(t, body, &cs)
	want := []refConsumerInfo{
		{ID: 1, RemoteAddr: "192.0.2.7", UserAgent: "jetstream", EventsConsumed: 12, ConnectedAt: at},
		{ID: 2, RemoteAddr: "2001:db8::1", UserAgent: "x", ConnectedAt: at.Add(time.Second)},
	}
	if code != 200 || !slices.Equal(cs, want) {
		t.Fatalf("consumers/list: %d %+v", code, cs)
	}
}

func TestReferenceRepoShapes(t *testing.T) {
	e := newRefEnv(t)
	h := e.mkHost(t, "pds.example.com")
	const n = takedownsLimit + 20
	dids := make([]string, n)
	for i := range dids {
		dids[i] = fmt.Sprintf("did:plc:%024d", i)
	}
	e.mkAccounts(t, h.ID, dids...)
	for _, did := range dids {
		code, body := e.refCall(t, "old-secret", http.MethodPost, "/admin/repo/takeDown", map[string]any{"did": did})
		wantOK(t, "takeDown", code, body)
	}
	code, body := e.refCall(t, "old-secret", http.MethodPost, "/admin/repo/reverseTakedown", map[string]any{"did": dids[0]})
	wantOK(t, "reverseTakedown", code, body)
	// goat's `relay admin account list` sends cursor= and size=.
	var got []string
	path := "/admin/repo/takedowns?cursor=&size=500"
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("takedowns did not end")
		}
		code, body = e.refCall(t, "old-secret", http.MethodGet, path, nil)
		var p refTakedowns
		strict(t, body, &p)
		if code != 200 {
			t.Fatalf("takedowns: %d %s", code, body)
		}
		got = append(got, p.DIDs...)
		if p.Cursor == 0 {
			if strings.Contains(string(body), "cursor") {
				t.Fatalf("last page carries a cursor: %s", body)
			}
			break
		}
		path = fmt.Sprintf("/admin/repo/takedowns?cursor=%d", p.Cursor)
	}
	if !slices.Equal(got, dids[1:]) {
		t.Fatalf("takedowns listed %d DIDs, want %d", len(got), n-1)
	}
	code, body = e.refCall(t, "old-secret", http.MethodPost, "/admin/repo/takeDown", map[string]any{})
	wantRefError(t, "takeDown without did", code, body, 400, "must specify DID parameter in body")
	code, body = e.refCall(t, "old-secret", http.MethodPost, "/admin/repo/takeDown", map[string]any{"did": "did:plc:zzzzzzzzzzzzzzzzzzzzzzzz"})
	wantRefError(t, "takeDown of an unknown account", code, body, 404, "unknown account")
	code, body = e.refCall(t, "old-secret", http.MethodGet, "/admin/repo/takedowns?cursor=x", nil)
	wantRefError(t, "bad cursor", code, body, 400, "cursor")
}
