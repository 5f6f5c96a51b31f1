package xrpc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/internal/fixtures"
	"github.com/atrelay/relay/internal/storetest"
	"github.com/atrelay/relay/store"
)

// fakeEngine records requestCrawl calls and returns canned errors.
type fakeEngine struct {
	mu        sync.Mutex // guards all fields
	crawlErr  error
	healthErr error
	crawled   []string
}

func (e *fakeEngine) RequestCrawl(_ context.Context, hostname string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.crawled = append(e.crawled, hostname)
	return e.crawlErr
}

func (e *fakeEngine) Health(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.healthErr
}

func (e *fakeEngine) set(crawlErr, healthErr error) {
	e.mu.Lock()
	e.crawlErr, e.healthErr = crawlErr, healthErr
	e.mu.Unlock()
}

// fakeResolver answers Cached from maps: errs are cached failures, ids
// cached identities; anything else is not cached.
type fakeResolver struct {
	mu   sync.Mutex // guards ids and errs
	ids  map[string]identity.Identity
	errs map[string]error
}

func (r *fakeResolver) Cached(did string) (identity.Identity, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err, ok := r.errs[did]; ok {
		return identity.Identity{}, true, err
	}
	if id, ok := r.ids[did]; ok {
		return id, true, nil
	}
	return identity.Identity{}, false, nil
}

// testFrame is a stand-in frame: the store only needs bytes.
func testFrame(_ int, seq store.Seq) []byte { return fmt.Appendf(nil, "frame-%d", seq) }

// env is a running API server over a real store.
type env struct {
	st     *store.Store
	eng    *fakeEngine
	res    *fakeResolver
	srv    *Server
	ts     *httptest.Server
	client *http.Client
}

// newEnv starts a server whose per-client requestCrawl limit is out of the
// way: every test client is 127.0.0.1.
func newEnv(t *testing.T, firehose http.Handler) *env {
	t.Helper()
	res := &fakeResolver{ids: map[string]identity.Identity{}, errs: map[string]error{}}
	e := newEnvWith(t, firehose, res)
	e.res = res
	return e
}

// newEnvWith is newEnv with the given resolver (e.res stays nil).
func newEnvWith(t *testing.T, firehose http.Handler, res Resolver) *env {
	t.Helper()
	return newEnvConfig(t, Config{Firehose: firehose, Resolver: res, CrawlRequestsPerMinute: 1 << 30})
}

// newEnvConfig starts a server with cfg, filling in its Store and Engine
// and, when cfg has none, a fake Resolver (e.res).
func newEnvConfig(t *testing.T, cfg Config) *env {
	t.Helper()
	e := &env{st: storetest.Open(t), eng: &fakeEngine{}}
	if cfg.Resolver == nil {
		e.res = &fakeResolver{ids: map[string]identity.Identity{}, errs: map[string]error{}}
		cfg.Resolver = e.res
	}
	cfg.Store, cfg.Engine = e.st, e.eng
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = srv
	e.ts = httptest.NewServer(srv) // listens on 127.0.0.1, port 0
	t.Cleanup(e.ts.Close)
	e.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return e
}

func (e *env) host(t testing.TB, name string) store.Host {
	t.Helper()
	return storetest.Host(t, e.st, name)
}

// commitCID is the test commit CID for a rev.
func commitCID(rev string) cid.CID { return cid.Sum(0x71, []byte("commit "+rev)) }

// commit logs a #commit for did from host, creating the account if new.
func (e *env) commit(t testing.TB, host store.HostID, did, rev string) {
	t.Helper()
	e.append(t, store.Event{
		Kind: store.KindCommit, DID: []byte(did), Host: host,
		Rev: []byte(rev), Commit: commitCID(rev), Data: cid.Sum(0x71, []byte("data "+rev)),
	})
}

// status logs an #account with an upstream status (creating the account
// without a commit if new).
func (e *env) status(t testing.TB, host store.HostID, did string, st store.AccountStatus) {
	t.Helper()
	e.append(t, store.Event{Kind: store.KindAccount, DID: []byte(did), Host: host, Status: st})
}

func (e *env) append(t testing.TB, ev store.Event) {
	t.Helper()
	seqs, err := storetest.Append(e.st, []store.Event{ev}, testFrame)
	if err != nil || len(seqs) != 1 || seqs[0] == store.SeqNone {
		t.Fatalf("Append(%s %s): %v %v", ev.Kind, ev.DID, seqs, err)
	}
}

func (e *env) local(t testing.TB, did string, st store.LocalStatus) {
	t.Helper()
	if err := e.st.SetLocalStatus([]byte(did), st); err != nil {
		t.Fatalf("SetLocalStatus: %v", err)
	}
}

// response is a finished HTTP exchange.
type response struct {
	code   int
	header http.Header
	body   []byte
}

func (e *env) do(t testing.TB, method, path, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) get(t testing.TB, path string) response { return e.do(t, http.MethodGet, path, "") }

// wantError checks an XRPC error answer.
func wantError(t testing.TB, r response, code int, name string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d (body %s)", r.code, code, r.body)
	}
	var eb struct {
		Error   *string `json:"error"`
		Message *string `json:"message"`
	}
	if err := json.Unmarshal(r.body, &eb); err != nil || eb.Error == nil || eb.Message == nil {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	if *eb.Error != name {
		t.Fatalf("error %q, want %q (message %q)", *eb.Error, name, *eb.Message)
	}
}

// decodeOK checks a 200 JSON answer and returns it as a generic map.
func decodeOK(t testing.TB, r response) map[string]any {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("status %d, body %s", r.code, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	return m
}

// lexiconDef returns one def of a com.atproto.sync lexicon.
func lexiconDef(t testing.TB, name, def string) map[string]any {
	t.Helper()
	var lex struct {
		Defs map[string]map[string]any `json:"defs"`
	}
	if err := json.Unmarshal(fixtures.Read(t, "lexicons/com/atproto/sync/"+name+".json"), &lex); err != nil {
		t.Fatalf("lexicon %s: %v", name, err)
	}
	d, ok := lex.Defs[def]
	if !ok {
		t.Fatalf("lexicon %s has no def %q", name, def)
	}
	return d
}

// outputSchema returns the output schema object of a query's main def, or
// the object def itself for other defs.
func outputSchema(t testing.TB, name, def string) map[string]any {
	t.Helper()
	d := lexiconDef(t, name, def)
	if def != "main" {
		return d
	}
	out, _ := d["output"].(map[string]any)
	schema, _ := out["schema"].(map[string]any)
	if schema == nil {
		t.Fatalf("lexicon %s has no output schema", name)
	}
	return schema
}

// checkShape checks obj against a lexicon object schema: every required
// property present, no property the schema does not declare, integers and
// booleans of the declared type, and knownValues honoured.
func checkShape(t testing.TB, obj map[string]any, schema map[string]any, knownHostStatus []string) {
	t.Helper()
	props, _ := schema["properties"].(map[string]any)
	req, _ := schema["required"].([]any)
	for _, r := range req {
		if _, ok := obj[r.(string)]; !ok {
			t.Errorf("required property %q missing from %v", r, obj)
		}
	}
	for k, v := range obj {
		p, ok := props[k].(map[string]any)
		if !ok {
			t.Errorf("property %q not in the lexicon", k)
			continue
		}
		switch p["type"] {
		case "string":
			s, ok := v.(string)
			if !ok {
				t.Errorf("property %q = %v, want string", k, v)
			}
			if kv, ok := p["knownValues"].([]any); ok && !slices.Contains(kv, any(s)) {
				t.Errorf("property %q = %q, not a known value %v", k, s, kv)
			}
		case "integer":
			if f, ok := v.(float64); !ok || f != float64(int64(f)) {
				t.Errorf("property %q = %v, want integer", k, v)
			}
		case "boolean":
			if _, ok := v.(bool); !ok {
				t.Errorf("property %q = %v, want boolean", k, v)
			}
		case "array":
			if _, ok := v.([]any); !ok {
				t.Errorf("property %q = %v, want array", k, v)
			}
		case "ref":
			if p["ref"] == "com.atproto.sync.defs#hostStatus" && !slices.Contains(knownHostStatus, v.(string)) {
				t.Errorf("property %q = %v, not a defs#hostStatus value", k, v)
			}
		}
	}
}

// hostStatusValues reads defs#hostStatus knownValues.
func hostStatusValues(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, v := range lexiconDef(t, "defs", "hostStatus")["knownValues"].([]any) {
		out = append(out, v.(string))
	}
	return out
}
