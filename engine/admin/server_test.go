package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/xrpc"
	"github.com/atrelay/relay/store"
)

const (
	didA = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
	didB = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestAuthEveryRoute(t *testing.T) {
	e := newEnv(t)
	bad := map[string]string{
		"none":             "",
		"wrong bearer":     "Bearer nope",
		"empty bearer":     "Bearer ",
		"prefix of token":  "Bearer " + testToken[:len(testToken)-1],
		"token plus extra": "Bearer " + testToken + "x",
		"wrong basic":      basic("admin", "nope"),
		"wrong basic user": basic("root", testToken),
		"bare token":       testToken,
		"other scheme":     "Token " + testToken,
	}
	paths := append(Paths(), "/admin/does/not/exist", "/admin/")
	for _, p := range paths {
		for name, auth := range bad {
			for _, m := range []string{http.MethodGet, http.MethodPost} {
				code, hdr, body := e.raw(t, m, p, auth, `{"host":"x.example.com","did":"`+didA+`"}`)
				if code != http.StatusUnauthorized {
					t.Errorf("%s %s with %s: %d %s", m, p, name, code, body)
				}
				if len(hdr.Values("WWW-Authenticate")) != 2 || body != `{"error":"Unauthorized"}`+"\n" {
					t.Errorf("%s %s with %s: header %v body %s", m, p, name, hdr, body)
				}
			}
		}
	}
	if len(e.eng.calls) != 0 {
		t.Fatalf("unauthenticated requests reached the engine: %v", e.eng.calls)
	}
	for _, auth := range []string{"Bearer " + testToken, "bearer " + testToken, basic("admin", testToken)} {
		code, _, body := e.raw(t, http.MethodGet, "/admin/subs/getEnabled", auth, "")
		if code != http.StatusOK || !strings.Contains(body, `"enabled":true`) {
			t.Errorf("auth %q: %d %s", auth, code, body)
		}
	}
	code, _, _ := e.raw(t, http.MethodGet, "/admin/does/not/exist", "Bearer "+testToken, "")
	if code != http.StatusNotFound {
		t.Errorf("unknown path with token: %d", code)
	}
}

func TestProtect(t *testing.T) {
	e := newEnv(t)
	h := e.srv.Protect(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(299) }))
	for auth, want := range map[string]int{"": 401, "Bearer x": 401, "Bearer " + testToken: 299, basic("admin", testToken): 299} {
		req, _ := http.NewRequest(http.MethodGet, "/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("auth %q: %d, want %d", auth, rec.Code, want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	e := newEnv(t)
	if _, err := New(Config{Store: e.st, Engine: e.eng}); !errors.Is(err, ErrNoToken) {
		t.Errorf("no token: %v", err)
	}
	if _, err := New(Config{Engine: e.eng, Token: "x"}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("no store: %v", err)
	}
	if _, err := New(Config{Store: e.st, Token: "x"}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("no engine: %v", err)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t)
	for _, rt := range routeTable() {
		other := http.MethodPost
		if rt.method == http.MethodPost {
			other = http.MethodGet
		}
		code, hdr, _ := e.raw(t, other, rt.path, "Bearer "+testToken, "")
		if code != http.StatusMethodNotAllowed || hdr.Get("Allow") != rt.method {
			t.Errorf("%s %s: %d Allow=%q", other, rt.path, code, hdr.Get("Allow"))
		}
	}
}

func TestHostsListing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	names := []string{"a.example.com", "b.example.com", "c.example.com"}
	for _, n := range names {
		e.mkHost(t, n)
	}
	hb, _ := e.st.HostByName("b.example.com")
	e.mkAccounts(t, hb.ID, didA, didB)
	if _, err := e.st.UpdateHost(hb.ID, func(h *store.Host) {
		h.Cursor, h.LastError, h.LastErrorMilli, h.LastConnectMilli = 77, "dial: refused", 1700000000000, 1700000001000
	}); err != nil {
		t.Fatal(err)
	}
	e.eng.conns = []string{"b.example.com"}

	var got []HostInfo
	cursor := ""
	for range 5 {
		p, err := e.client.Hosts(ctx, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p.Hosts...)
		if cursor = p.Cursor; cursor == "" {
			break
		}
	}
	if len(got) != 3 {
		t.Fatalf("got %d hosts: %+v", len(got), got)
	}
	for i, n := range names {
		if got[i].Hostname != n {
			t.Fatalf("host %d = %s, want %s", i, got[i].Hostname, n)
		}
	}
	b := got[1]
	if !b.Connected || got[0].Connected || b.AccountCount != 2 || b.AccountLimit != 100 || b.Cursor != 77 ||
		b.Status != "active" || b.LastError != "dial: refused" || b.LastErrorAt == nil || b.LastConnect == nil ||
		got[0].LastConnect != nil || b.FirstSeen.IsZero() {
		t.Fatalf("b = %+v", b)
	}
	p, err := e.client.Hosts(ctx, "", 0)
	if err != nil || len(p.Hosts) != 3 || p.Cursor != "" {
		t.Fatalf("default page: %+v %v", p, err)
	}
	for _, q := range []string{"limit=0", "limit=10001", "cursor=x", "cursor=4294967296"} {
		code, _, _ := e.raw(t, http.MethodGet, "/admin/pds/list?"+q, "Bearer "+testToken, "")
		if code != http.StatusBadRequest {
			t.Errorf("%s: %d", q, code)
		}
	}
	conns, err := e.client.UpstreamConns(ctx)
	if err != nil || !slices.Equal(conns, []string{"b.example.com"}) {
		t.Fatalf("UpstreamConns = %v %v", conns, err)
	}
}

func TestHostActions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.mkHost(t, "pds.example.com")
	wantCall := func(want string) {
		t.Helper()
		if got := e.eng.lastCall(); got != want {
			t.Fatalf("engine call %q, want %q", got, want)
		}
	}
	status := func() string {
		h, _ := e.st.HostByName("pds.example.com")
		return h.Status.String()
	}
	if err := e.client.BanHost(ctx, "pds.example.com"); err != nil || status() != "banned" {
		t.Fatalf("BanHost: %v, status %s", err, status())
	}
	wantCall("ban-host pds.example.com")
	if err := e.client.UnbanHost(ctx, "pds.example.com"); err != nil || status() != "active" {
		t.Fatalf("UnbanHost: %v, status %s", err, status())
	}
	n, tr := uint64(5000), true
	if err := e.client.SetHostLimits(ctx, "pds.example.com", HostLimits{AccountLimit: &n, Trusted: &tr}); err != nil {
		t.Fatal(err)
	}
	wantCall("limits pds.example.com accounts=5000 trusted=true")
	if h, _ := e.st.HostByName("pds.example.com"); h.AccountLimit != 5000 || !h.Trusted {
		t.Fatalf("limits not applied: %+v", h)
	}
	if err := e.client.ResetCursor(ctx, "pds.example.com"); err != nil {
		t.Fatal(err)
	}
	wantCall("reset-cursor pds.example.com")
	if err := e.client.AdminRequestCrawl(ctx, "new.example.com"); err != nil {
		t.Fatal(err)
	}
	wantCall("crawl new.example.com")
	e.eng.conns = []string{"pds.example.com"}
	if err := e.client.KillUpstream(ctx, "pds.example.com", true); err != nil {
		t.Fatal(err)
	}
	wantCall("kill pds.example.com true")

	// Errors, each mapped to its answer.
	wantAPIError(t, e.client.BanHost(ctx, "nope.example.com"), 404, "Not Found")
	wantAPIError(t, e.client.KillUpstream(ctx, "pds.example.com", false), 400, "Bad Request")
	wantAPIError(t, e.client.AdminRequestCrawl(ctx, "bad host"), 400, "BadRequest")
	wantAPIError(t, e.client.BanHost(ctx, ""), 400, "Bad Request")
	wantAPIError(t, e.client.SetHostLimits(ctx, "pds.example.com", HostLimits{}), 400, "Bad Request")
	wantAPIError(t, e.client.ResetCursor(ctx, strings.Repeat("a", 300)), 400, "Bad Request")
	for _, c := range []struct {
		err  error
		code int
		name string
	}{
		{xrpc.ErrHostBanned, 403, "HostBanned"},
		{xrpc.ErrHostNotFound, 400, "HostNotFound"},
		{xrpc.ErrNewHostLimit, 429, "RateLimitExceeded"},
		{errors.New("disk on fire"), 500, "InternalServerError"},
	} {
		e.eng.fail(fmt.Errorf("engine: %w", c.err))
		wantAPIError(t, e.client.AdminRequestCrawl(ctx, "x.example.com"), c.code, c.name)
	}
	e.eng.fail(nil)

	// The reference relay's query-parameter form still works.
	code, _, body := e.raw(t, http.MethodPost, "/admin/pds/block?host=pds.example.com", "Bearer "+testToken, "")
	if code != 200 || body != "{\"success\":\"true\"}\n" || status() != "banned" {
		t.Fatalf("query form: %d %s %s", code, body, status())
	}
	code, _, body = e.raw(t, http.MethodPost, "/admin/pds/changeLimits", "Bearer "+testToken, `{"host":"pds.example.com","repo_limit":-1}`)
	if code != 400 {
		t.Fatalf("negative limit: %d %s", code, body)
	}
	code, _, _ = e.raw(t, http.MethodPost, "/admin/pds/block", "Bearer "+testToken, `{"host":`)
	if code != 400 {
		t.Fatalf("bad JSON: %d", code)
	}
	code, _, _ = e.raw(t, http.MethodPost, "/admin/pds/block", "Bearer "+testToken, `{"host":"`+strings.Repeat("a", 20000)+`"}`)
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("huge body: %d", code)
	}
	code, _, _ = e.raw(t, http.MethodPost, "/admin/subs/killUpstream?host=pds.example.com&block=maybe", "Bearer "+testToken, "")
	if code != 400 {
		t.Fatalf("bad block param: %d", code)
	}
}

func TestCrawlSwitch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, on := range []bool{false, true, false} {
		if err := e.client.SetCrawlEnabled(ctx, on); err != nil {
			t.Fatal(err)
		}
		got, err := e.client.CrawlEnabled(ctx)
		if err != nil || got != on {
			t.Fatalf("CrawlEnabled = %v %v, want %v", got, err, on)
		}
	}
	code, _, _ := e.raw(t, http.MethodPost, "/admin/subs/setEnabled?enabled=true", "Bearer "+testToken, "")
	if on, _ := e.client.CrawlEnabled(ctx); code != 200 || !on {
		t.Fatalf("query form: %d %v", code, on)
	}
	code, _, _ = e.raw(t, http.MethodPost, "/admin/subs/setEnabled", "Bearer "+testToken, "{}")
	if code != 400 {
		t.Fatalf("missing enabled: %d", code)
	}
}

func TestAccountActions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	h := e.mkHost(t, "pds.example.com")
	e.mkAccounts(t, h.ID, didA, didB)
	if err := e.client.Takedown(ctx, didA); err != nil {
		t.Fatal(err)
	}
	p, err := e.client.Takedowns(ctx, 0)
	if err != nil || !slices.Equal(p.DIDs, []string{didA}) || p.Cursor != 0 {
		t.Fatalf("Takedowns = %+v %v", p, err)
	}
	if err := e.client.ReverseTakedown(ctx, didA); err != nil {
		t.Fatal(err)
	}
	if p, _ := e.client.Takedowns(ctx, 0); len(p.DIDs) != 0 {
		t.Fatalf("after restore: %+v", p)
	}
	if err := e.client.Resync(ctx, didB); err != nil || e.eng.lastCall() != "resync "+didB {
		t.Fatalf("Resync: %v %s", err, e.eng.lastCall())
	}
	// The lower-case alias of takeDown.
	code, _, _ := e.raw(t, http.MethodPost, "/admin/repo/takedown", "Bearer "+testToken, `{"did":"`+didB+`"}`)
	if code != 200 {
		t.Fatalf("alias: %d", code)
	}
	wantAPIError(t, e.client.Takedown(ctx, "did:plc:zzzzzzzzzzzzzzzzzzzzzzzz"), 404, "Not Found")
	wantAPIError(t, e.client.ReverseTakedown(ctx, "not a did"), 400, "Bad Request")
	wantAPIError(t, e.client.Resync(ctx, ""), 400, "Bad Request")
	code, _, _ = e.raw(t, http.MethodGet, "/admin/repo/takedowns?cursor=x", "Bearer "+testToken, "")
	if code != 400 {
		t.Fatalf("bad cursor: %d", code)
	}
}

func TestTakedownsPaging(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	h := e.mkHost(t, "pds.example.com")
	const n = takedownsLimit + 150 // minus every 7th: still more than a page
	dids := make([]string, n)
	for i := range dids {
		dids[i] = fmt.Sprintf("did:plc:%024d", i)
	}
	e.mkAccounts(t, h.ID, dids...)
	for i, did := range dids {
		if i%7 == 3 { // leave some active between the takedowns
			continue
		}
		if err := e.st.SetLocalStatus([]byte(did), store.LocalTakendown); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	var cursor uint64
	pages := 0
	for {
		p, err := e.client.Takedowns(ctx, cursor)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, p.DIDs...)
		if cursor = p.Cursor; cursor == 0 {
			break
		}
	}
	var want []string
	for i, did := range dids {
		if i%7 != 3 {
			want = append(want, did)
		}
	}
	if pages != 2 || !slices.Equal(got, want) {
		t.Fatalf("%d pages, %d DIDs, want 2 pages, %d DIDs", pages, len(got), len(want))
	}
}

func TestDomainsAndConsumers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, d := range []string{"Evil.example", "spam.example"} {
		if err := e.client.BanDomain(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := e.client.Domains(ctx)
	if err != nil || !slices.Equal(ds, []string{"evil.example", "spam.example"}) {
		t.Fatalf("Domains = %v %v", ds, err)
	}
	if !e.st.IsBanned("pds.evil.example") {
		t.Fatal("ban not applied")
	}
	if err := e.client.UnbanDomain(ctx, "evil.example"); err != nil {
		t.Fatal(err)
	}
	// The reference relay's paths and {"Domain": ...} body.
	code, _, body := e.raw(t, http.MethodPost, "/admin/subs/banDomain", "Bearer "+testToken, `{"Domain":"ref.example"}`)
	if code != 200 {
		t.Fatalf("ref ban: %d %s", code, body)
	}
	code, _, body = e.raw(t, http.MethodGet, "/admin/subs/listDomainBans", "Bearer "+testToken, "")
	if code != 200 || body != `{"banned_domains":["ref.example","spam.example"]}`+"\n" {
		t.Fatalf("ref list: %d %s", code, body)
	}
	wantAPIError(t, e.client.BanDomain(ctx, ""), 400, "Bad Request")

	cs, err := e.client.Consumers(ctx)
	if err != nil || cs == nil || len(cs) != 0 {
		t.Fatalf("no consumers: %v %v", cs, err)
	}
	cur := uint64(10)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.eng.consumers = []Consumer{{RemoteAddr: "10.0.0.1:5555", UserAgent: "bsky", Cursor: &cur, Position: 99, Lag: 1, ConnectedAt: at, Mode: "live"}}
	cs, err = e.client.Consumers(ctx)
	if err != nil || len(cs) != 1 || *cs[0].Cursor != 10 || cs[0].Position != 99 || !cs[0].ConnectedAt.Equal(at) {
		t.Fatalf("Consumers = %+v %v", cs, err)
	}
}

func wantAPIError(t *testing.T, err error, code int, name string) {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != code || ae.Name != name {
		t.Fatalf("error %v, want %d %s", err, code, name)
	}
}
