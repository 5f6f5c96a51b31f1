package xrpc

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/store"
)

const (
	didA = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
	didB = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
	didC = "did:plc:cccccccccccccccccccccccc"
	didD = "did:plc:dddddddddddddddddddddddd"
	didE = "did:plc:eeeeeeeeeeeeeeeeeeeeeeee"
	didF = "did:plc:ffffffffffffffffffffffff"
	didG = "did:plc:gggggggggggggggggggggggg"
	didH = "did:web:alice.example.com"
	rev1 = "3kc2q5ju4ua2s"
	rev2 = "3kc2q5ju4ua2t"
)

// populate builds accounts in every interesting state on one host.
func populate(t *testing.T, e *env) store.Host {
	h := e.host(t, "pds.example.com")
	e.commit(t, h.ID, didA, rev1)
	e.commit(t, h.ID, didA, rev2) // A: active, two commits
	e.commit(t, h.ID, didB, rev1)
	e.local(t, didB, store.LocalTakendown) // B: local takedown
	e.commit(t, h.ID, didC, rev1)
	e.status(t, h.ID, didC, store.StatusDeactivated) // C: deactivated upstream
	e.status(t, h.ID, didD, store.StatusActive)      // D: no commit yet
	e.commit(t, h.ID, didE, rev1)
	e.local(t, didE, store.LocalSuspended) // E: local suspension
	e.commit(t, h.ID, didF, rev1)
	e.status(t, h.ID, didF, store.StatusDeleted) // F: deleted upstream
	e.commit(t, h.ID, didG, rev1)
	e.local(t, didG, store.LocalHostThrottled) // G: over its host's limit
	e.commit(t, h.ID, didH, rev1)              // H: did:web, active
	return h
}

func TestListReposPaging(t *testing.T) {
	e := newEnv(t, nil)
	populate(t, e)
	repoSchema := outputSchema(t, "listRepos", "repo")
	mainSchema := outputSchema(t, "listRepos", "main")
	for _, limit := range []int{1, 2, 3, 7, 500} {
		t.Run(fmt.Sprint("limit=", limit), func(t *testing.T) {
			got := map[string]map[string]any{}
			cursor := ""
			for pages := 0; ; pages++ {
				if pages > 20 {
					t.Fatal("paging does not end")
				}
				q := url.Values{"limit": {fmt.Sprint(limit)}}
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				m := decodeOK(t, e.get(t, "/xrpc/com.atproto.sync.listRepos?"+q.Encode()))
				checkShape(t, m, mainSchema, nil)
				repos := m["repos"].([]any)
				if len(repos) > limit {
					t.Fatalf("page of %d > limit %d", len(repos), limit)
				}
				for _, r := range repos {
					obj := r.(map[string]any)
					checkShape(t, obj, repoSchema, nil)
					did := obj["did"].(string)
					if _, dup := got[did]; dup {
						t.Fatalf("%s listed twice", did)
					}
					got[did] = obj
				}
				c, ok := m["cursor"].(string)
				if !ok {
					if len(repos) == limit && limit < 7 {
						t.Fatalf("full page without cursor")
					}
					break
				}
				cursor = c
			}
			if len(got) != 7 {
				t.Fatalf("listed %d repos, want 7 (all but the one without a commit): %v", len(got), got)
			}
			if _, ok := got[didD]; ok {
				t.Fatal("account without a commit listed")
			}
			want := map[string]string{didA: "", didB: "takendown", didC: "deactivated", didE: "suspended",
				didF: "deleted", didG: "throttled", didH: ""}
			for did, status := range want {
				obj := got[did]
				if active := obj["active"].(bool); active != (status == "") {
					t.Errorf("%s active=%v", did, active)
				}
				if s, _ := obj["status"].(string); s != status {
					t.Errorf("%s status %q, want %q", did, s, status)
				}
			}
			if a := got[didA]; a["rev"] != rev2 || a["head"] != commitCID(rev2).String() {
				t.Errorf("A = %v, want rev %s head %s", a, rev2, commitCID(rev2))
			}
		})
	}
}

func TestListReposEmpty(t *testing.T) {
	e := newEnv(t, nil)
	m := decodeOK(t, e.get(t, "/xrpc/com.atproto.sync.listRepos"))
	if r, ok := m["repos"].([]any); !ok || len(r) != 0 {
		t.Fatalf("repos = %v, want []", m["repos"])
	}
	if _, ok := m["cursor"]; ok {
		t.Fatal("cursor on an empty list")
	}
}

func TestListReposBadParams(t *testing.T) {
	e := newEnv(t, nil)
	for _, q := range []string{"limit=0", "limit=1001", "limit=abc", "limit=-1", "cursor=x", "cursor=-5", "cursor=1.5"} {
		t.Run(q, func(t *testing.T) {
			wantError(t, e.get(t, "/xrpc/com.atproto.sync.listRepos?"+q), http.StatusBadRequest, "InvalidRequest")
		})
	}
}

func TestGetLatestCommit(t *testing.T) {
	e := newEnv(t, nil)
	populate(t, e)
	schema := outputSchema(t, "getLatestCommit", "main")
	for _, did := range []string{didA, didH} {
		m := decodeOK(t, e.get(t, "/xrpc/com.atproto.sync.getLatestCommit?did="+url.QueryEscape(did)))
		checkShape(t, m, schema, nil)
	}
	m := decodeOK(t, e.get(t, "/xrpc/com.atproto.sync.getLatestCommit?did="+didA))
	if m["cid"] != commitCID(rev2).String() || m["rev"] != rev2 {
		t.Fatalf("got %v", m)
	}
	cases := []struct {
		query string
		code  int
		name  string
	}{
		{"", 400, "InvalidRequest"},
		{"did=", 400, "InvalidRequest"},
		{"did=not-a-did", 400, "InvalidRequest"},
		{"did=did:plc:zzzzzzzzzzzzzzzzzzzzzzzz", 404, "RepoNotFound"},
		{"did=" + didB, 403, "RepoTakendown"},
		{"did=" + didC, 403, "RepoDeactivated"},
		{"did=" + didD, 404, "RepoNotSynchronized"},
		{"did=" + didE, 403, "RepoSuspended"},
		{"did=" + didF, 404, "RepoNotFound"},
		{"did=" + didG, 403, "RepoInactive"},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			wantError(t, e.get(t, "/xrpc/com.atproto.sync.getLatestCommit?"+c.query), c.code, c.name)
		})
	}
}

func TestGetRepoStatus(t *testing.T) {
	e := newEnv(t, nil)
	populate(t, e)
	schema := outputSchema(t, "getRepoStatus", "main")
	cases := []struct {
		did    string
		active bool
		status string
		rev    string
	}{
		{didA, true, "", rev2},
		{didB, false, "takendown", rev1},
		{didC, false, "deactivated", rev1},
		{didD, true, "", ""},
		{didF, false, "deleted", rev1},
		{didG, false, "throttled", rev1},
	}
	for _, c := range cases {
		t.Run(c.did, func(t *testing.T) {
			m := decodeOK(t, e.get(t, "/xrpc/com.atproto.sync.getRepoStatus?did="+c.did))
			checkShape(t, m, schema, nil)
			s, _ := m["status"].(string)
			r, _ := m["rev"].(string)
			if m["did"] != c.did || m["active"] != c.active || s != c.status || r != c.rev {
				t.Fatalf("got %v, want active=%v status=%q rev=%q", m, c.active, c.status, c.rev)
			}
		})
	}
	wantError(t, e.get(t, "/xrpc/com.atproto.sync.getRepoStatus?did=did:plc:zzzzzzzzzzzzzzzzzzzzzzzz"), 404, "RepoNotFound")
	wantError(t, e.get(t, "/xrpc/com.atproto.sync.getRepoStatus?did=bad"), 400, "InvalidRequest")
}

func TestGetRepoRedirect(t *testing.T) {
	e := newEnv(t, nil)
	populate(t, e)
	e.res.ids[didA] = identity.Identity{DID: didA, PDSHost: "morel.us-east.host.bsky.network"}
	e.res.ids[didH] = identity.Identity{DID: didH, PDSHost: "localhost:2583"}
	e.res.ids[didB] = identity.Identity{DID: didB, PDSHost: "pds.example.com"}
	e.res.errs[didC] = fmt.Errorf("lookup: %w", identity.ErrTimeout)
	e.res.errs[didG] = identity.ErrNotFound

	cases := []struct {
		query, location string
	}{
		// Cached identities: their PDS.
		{"did=" + didA, "https://morel.us-east.host.bsky.network/xrpc/com.atproto.sync.getRepo?did=did%3Aplc%3Aaaaaaaaaaaaaaaaaaaaaaaaa"},
		{"did=" + didA + "&since=" + rev1, "https://morel.us-east.host.bsky.network/xrpc/com.atproto.sync.getRepo?did=did%3Aplc%3Aaaaaaaaaaaaaaaaaaaaaaaaa&since=" + rev1},
		{"did=" + didH, "http://localhost:2583/xrpc/com.atproto.sync.getRepo?did=did%3Aweb%3Aalice.example.com"},
		// A cached transient failure, or nothing cached: the host the
		// events come from.
		{"did=" + didC, "https://pds.example.com/xrpc/com.atproto.sync.getRepo?did=did%3Aplc%3Acccccccccccccccccccccccc"},
		{"did=" + didD, "https://pds.example.com/xrpc/com.atproto.sync.getRepo?did=did%3Aplc%3Adddddddddddddddddddddddd"},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			r := e.get(t, "/xrpc/com.atproto.sync.getRepo?"+c.query)
			if r.code != http.StatusFound {
				t.Fatalf("status %d body %s", r.code, r.body)
			}
			if loc := r.header.Get("Location"); loc != c.location {
				t.Fatalf("Location %q, want %q", loc, c.location)
			}
		})
	}
	errCases := []struct {
		query string
		code  int
		name  string
	}{
		{"", 400, "InvalidRequest"},
		{"did=" + didA + "&since=notatid", 400, "InvalidRequest"},
		{"did=did:plc:zzzzzzzzzzzzzzzzzzzzzzzz", 404, "RepoNotFound"},
		{"did=" + didB, 403, "RepoTakendown"},
		{"did=" + didE, 403, "RepoSuspended"},
		{"did=" + didF, 404, "RepoNotFound"}, // deleted upstream
		{"did=" + didG, 404, "RepoNotFound"}, // cached tombstone
	}
	for _, c := range errCases {
		t.Run(c.query, func(t *testing.T) {
			wantError(t, e.get(t, "/xrpc/com.atproto.sync.getRepo?"+c.query), c.code, c.name)
		})
	}
}

// TestGetRepoNoHost: an account the relay knows no host for (its only
// event came from a host that is not its PDS) and no cached document has
// no PDS to redirect to.
func TestGetRepoNoHost(t *testing.T) {
	e := newEnv(t, nil)
	e.append(t, store.Event{Kind: store.KindIdentity, DID: []byte(didA)})
	wantError(t, e.get(t, "/xrpc/com.atproto.sync.getRepo?did="+didA), http.StatusNotFound, "RepoNotFound")
}

// TestGetRepoNeverResolves runs the API over a real identity resolver and a
// counting directory on 127.0.0.1: getRepo of unknown DIDs, malformed ones
// and known accounts whose identity is not cached sends the directory
// nothing (it used to resolve every one on demand: a free amplifier toward
// the PLC directory), and a cached identity is used without a request.
func TestGetRepoNeverResolves(t *testing.T) {
	var requests atomic.Int64
	key, err := atcrypto.GeneratePrivateKey(atcrypto.K256)
	if err != nil {
		t.Fatal(err)
	}
	plc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		did := strings.TrimPrefix(r.URL.Path, "/")
		fmt.Fprintf(w, `{"id":%q,"verificationMethod":[{"id":"#atproto","type":"Multikey","controller":%q,"publicKeyMultibase":%q}],"service":[{"id":"#atproto_pds","type":"AtprotoPersonalDataServer","serviceEndpoint":"https://moved.example.com"}]}`,
			did, did, key.Public().Multibase())
	}))
	defer plc.Close()
	ids := identity.New(identity.Config{PLCURL: plc.URL, AllowInsecureHosts: true})
	defer ids.Close()
	e := newEnvWith(t, nil, ids)
	h := e.host(t, "pds.example.com")
	e.commit(t, h.ID, didA, rev1)
	e.commit(t, h.ID, didB, rev1)

	for range 20 {
		wantError(t, e.get(t, "/xrpc/com.atproto.sync.getRepo?did=did:plc:zzzzzzzzzzzzzzzzzzzzzzzz"), 404, "RepoNotFound")
		wantError(t, e.get(t, "/xrpc/com.atproto.sync.getRepo?did=did:web:unknown.example.com"), 404, "RepoNotFound")
		wantError(t, e.get(t, "/xrpc/com.atproto.sync.getRepo?did=notadid"), 400, "InvalidRequest")
		r := e.get(t, "/xrpc/com.atproto.sync.getRepo?did="+didA)
		if want := "https://pds.example.com/"; r.code != http.StatusFound || !strings.HasPrefix(r.header.Get("Location"), want) {
			t.Fatalf("uncached known account: %d %q, want a redirect to %s", r.code, r.header.Get("Location"), want)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("getRepo sent the directory %d requests", n)
	}
	// Once the relay has resolved didB (for its own reasons), getRepo uses
	// the cached document.
	if _, err := ids.Lookup(context.Background(), didB); err != nil {
		t.Fatal(err)
	}
	r := e.get(t, "/xrpc/com.atproto.sync.getRepo?did="+didB)
	if want := "https://moved.example.com/"; r.code != http.StatusFound || !strings.HasPrefix(r.header.Get("Location"), want) {
		t.Fatalf("cached account: %d %q, want a redirect to %s", r.code, r.header.Get("Location"), want)
	}
	if n := requests.Load(); n != 1 {
		t.Fatalf("%d directory requests, want the one Lookup", n)
	}
}

func TestPDSScheme(t *testing.T) {
	f := func(host, want string) {
		t.Helper()
		if got := pdsScheme(host); got != want {
			t.Errorf("pdsScheme(%q) = %q, want %q", host, got, want)
		}
	}
	f("pds.example.com", "https")
	f("localhost:2583", "http")
	f("LOCALHOST:1", "http")
	f("127.0.0.1:8080", "http")
	f("[::1]:8080", "http")
	f("pds.example.com:8443", "https")
	f("localhost", "http")
	f("pds-1.localhost:2583", "https")
}
