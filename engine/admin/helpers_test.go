package admin

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/xrpc"
	"github.com/atrelay/relay/internal/storetest"
	"github.com/atrelay/relay/internal/testutil"
	"github.com/atrelay/relay/store"
)

const testToken = "s3cret-token"

// fakeEngine applies admin actions to the real store the way the relay
// engine would (so the list endpoints see them) and records every call.
type fakeEngine struct {
	st *store.Store // static

	mu        sync.Mutex // guards the fields below
	calls     []string
	crawlOn   bool
	conns     []string
	consumers []Consumer
	perDay    int64
	failWith  error // returned by every action when set
}

func (e *fakeEngine) NewHostsPerDay() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.perDay
}

func (e *fakeEngine) SetNewHostsPerDay(_ context.Context, n int64) error {
	if err := e.record("per-day %d", n); err != nil {
		return err
	}
	e.mu.Lock()
	e.perDay = n
	e.mu.Unlock()
	return nil
}

func (e *fakeEngine) record(format string, args ...any) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, fmt.Sprintf(format, args...))
	return e.failWith
}

func (e *fakeEngine) lastCall() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.calls) == 0 {
		return ""
	}
	return e.calls[len(e.calls)-1]
}

func (e *fakeEngine) fail(err error) {
	e.mu.Lock()
	e.failWith = err
	e.mu.Unlock()
}

func (e *fakeEngine) host(name string) (store.Host, error) {
	h, ok := e.st.HostByName(strings.ToLower(name))
	if !ok {
		return h, fmt.Errorf("%w: %s", ErrUnknownHost, name)
	}
	return h, nil
}

func (e *fakeEngine) UpstreamConns() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.conns...)
}

func (e *fakeEngine) KillUpstream(_ context.Context, hostname string, ban bool) error {
	if err := e.record("kill %s %v", hostname, ban); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, c := range e.conns {
		if c == hostname {
			e.conns = append(e.conns[:i], e.conns[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrNotConnected, hostname)
}

func (e *fakeEngine) CrawlEnabled() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.crawlOn
}

func (e *fakeEngine) SetCrawlEnabled(_ context.Context, on bool) error {
	if err := e.record("crawl-enabled %v", on); err != nil {
		return err
	}
	e.mu.Lock()
	e.crawlOn = on
	e.mu.Unlock()
	return nil
}

func (e *fakeEngine) AdminRequestCrawl(_ context.Context, hostname string) error {
	if err := e.record("crawl %s", hostname); err != nil {
		return err
	}
	if strings.Contains(hostname, " ") {
		return fmt.Errorf("%w: %q", xrpc.ErrBadHostname, hostname)
	}
	_, err := e.st.CreateHost(store.NewHost{Hostname: hostname, Status: store.HostActive, AccountLimit: 100})
	return err
}

func (e *fakeEngine) setHostStatus(hostname string, st store.HostStatus) error {
	h, err := e.host(hostname)
	if err != nil {
		return err
	}
	_, err = e.st.UpdateHost(h.ID, func(h *store.Host) { h.Status = st })
	return err
}

func (e *fakeEngine) BanHost(_ context.Context, hostname string) error {
	if err := e.record("ban-host %s", hostname); err != nil {
		return err
	}
	return e.setHostStatus(hostname, store.HostBanned)
}

func (e *fakeEngine) UnbanHost(_ context.Context, hostname string) error {
	if err := e.record("unban-host %s", hostname); err != nil {
		return err
	}
	return e.setHostStatus(hostname, store.HostActive)
}

func (e *fakeEngine) BanDomain(_ context.Context, domain string) error {
	if err := e.record("ban-domain %s", domain); err != nil {
		return err
	}
	return e.st.BanDomain(domain)
}

func (e *fakeEngine) UnbanDomain(_ context.Context, domain string) error {
	if err := e.record("unban-domain %s", domain); err != nil {
		return err
	}
	return e.st.UnbanDomain(domain)
}

func (e *fakeEngine) SetHostLimits(_ context.Context, hostname string, l HostLimits) error {
	desc := "limits " + hostname
	if l.AccountLimit != nil {
		desc += fmt.Sprintf(" accounts=%d", *l.AccountLimit)
	}
	if l.Trusted != nil {
		desc += fmt.Sprintf(" trusted=%v", *l.Trusted)
	}
	if l.PerSecond != nil {
		desc += fmt.Sprintf(" per-second=%d", *l.PerSecond)
	}
	if err := e.record("%s", desc); err != nil {
		return err
	}
	h, err := e.host(hostname)
	if err != nil {
		return err
	}
	_, err = e.st.UpdateHost(h.ID, func(h *store.Host) {
		if l.AccountLimit != nil {
			h.AccountLimit = *l.AccountLimit
		}
		if l.Trusted != nil {
			h.Trusted = *l.Trusted
		}
	})
	return err
}

func (e *fakeEngine) setLocal(did string, st store.LocalStatus) error {
	var a store.Account
	ok, err := e.st.GetAccount([]byte(did), &a)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownAccount, did)
	}
	return e.st.SetLocalStatus([]byte(did), st)
}

func (e *fakeEngine) Takedown(_ context.Context, did string) error {
	if err := e.record("takedown %s", did); err != nil {
		return err
	}
	return e.setLocal(did, store.LocalTakendown)
}

func (e *fakeEngine) ReverseTakedown(_ context.Context, did string) error {
	if err := e.record("restore %s", did); err != nil {
		return err
	}
	return e.setLocal(did, store.LocalActive)
}

func (e *fakeEngine) ResetCursor(_ context.Context, hostname string) error {
	if err := e.record("reset-cursor %s", hostname); err != nil {
		return err
	}
	h, err := e.host(hostname)
	if err != nil {
		return err
	}
	_, err = e.st.UpdateHost(h.ID, func(h *store.Host) { h.Cursor = 0 })
	return err
}

func (e *fakeEngine) Resync(_ context.Context, did string) error {
	if err := e.record("resync %s", did); err != nil {
		return err
	}
	var a store.Account
	if ok, err := e.st.GetAccount([]byte(did), &a); err != nil || !ok {
		return fmt.Errorf("%w: %s", ErrUnknownAccount, did)
	}
	return nil
}

func (e *fakeEngine) Consumers() []Consumer {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Consumer(nil), e.consumers...)
}

// testFrame is a stand-in frame: the store only needs bytes.
func testFrame(_ int, seq store.Seq) []byte { return fmt.Appendf(nil, "frame-%d", seq) }

// env is a running admin server over a real store.
type env struct {
	st     *store.Store
	eng    *fakeEngine
	srv    *Server
	ts     *httptest.Server
	client *Client
}

func newEnv(t testing.TB) *env {
	t.Helper()
	st := storetest.Open(t)
	e := &env{st: st, eng: &fakeEngine{st: st, crawlOn: true, perDay: 50}}
	var err error
	e.srv, err = New(Config{Store: st, Engine: e.eng, Token: testToken})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.ts = httptest.NewServer(e.srv) // 127.0.0.1, port 0
	t.Cleanup(e.ts.Close)
	e.client = &Client{BaseURL: e.ts.URL, Token: testToken}
	return e
}

func (e *env) mkHost(t testing.TB, name string) store.Host {
	t.Helper()
	return storetest.Host(t, e.st, name)
}

// mkAccounts creates accounts with one commit each on host.
func (e *env) mkAccounts(t testing.TB, host store.HostID, dids ...string) {
	t.Helper()
	evs := make([]store.Event, len(dids))
	for i, did := range dids {
		evs[i] = store.Event{Kind: store.KindCommit, DID: []byte(did), Host: host,
			Rev: []byte("3kc2q5ju4ua2s"), Commit: cid.Sum(0x71, []byte(did)), Data: cid.Sum(0x71, []byte("d"+did))}
	}
	if _, err := storetest.Append(e.st, evs, testFrame); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

// raw sends a request with an Authorization header value ("" for none).
func (e *env) raw(t testing.TB, method, path, auth, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, b := testutil.Do(t, req)
	return resp.StatusCode, resp.Header, string(b)
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}
