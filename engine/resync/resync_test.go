package resync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/bench/fleet"
	"github.com/atrelay/relay/bench/plc"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/engine/verify"
)

// got is a Result copied out of OnResult (its views die with the call).
type got struct {
	did      string
	outcome  Outcome
	reason   verify.Reason
	err      error
	rev      string
	commit   cid.CID
	data     cid.CID
	block    []byte
	pds      string
	attempts int
}

// collector gathers results for a test.
type collector struct {
	ch chan got
}

func newCollector() *collector { return &collector{ch: make(chan got, 1000)} }

func (c *collector) onResult(did string, r Result) {
	c.ch <- got{did: did, outcome: r.Outcome, reason: r.Reason, err: r.Err, rev: string(r.State.Rev),
		commit: r.State.Commit.Clone(), data: r.State.Data.Clone(), block: append([]byte(nil), r.State.CommitBlock...),
		pds: r.Identity.PDSHost, attempts: r.Attempts}
}

// next waits for one result; a stuck resyncer fails the test through the
// test binary's timeout, never through a timed assertion.
func (c *collector) next(t *testing.T) got {
	t.Helper()
	return <-c.ch
}

// nextFor collects n results keyed by DID.
func (c *collector) collect(t *testing.T, n int) map[string]got {
	t.Helper()
	out := map[string]got{}
	for range n {
		g := c.next(t)
		out[g.did] = g
	}
	return out
}

func newResolver(t *testing.T, plcURL string) *identity.Resolver {
	t.Helper()
	r := identity.New(identity.Config{PLCURL: plcURL, AllowInsecureHosts: true})
	t.Cleanup(r.Close)
	return r
}

func newResyncer(t *testing.T, cfg Config) *Resyncer {
	t.Helper()
	if cfg.RatePerSecond == 0 {
		cfg.RatePerSecond = 1000
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = time.Millisecond
	}
	cfg.AllowInsecureHosts = true
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// latestCommit asks a fleet host for did's getLatestCommit.
func latestCommit(t *testing.T, h *fleet.Host, did string) (commit, rev string) {
	t.Helper()
	resp, err := http.Get(h.URL() + "/xrpc/com.atproto.sync.getLatestCommit?did=" + did)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ CID, Rev string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("getLatestCommit %d: %v", resp.StatusCode, err)
	}
	return out.CID, out.Rev
}

// TestResyncFleet resyncs every account of a small fleet after some
// writes, then again after a migration and a key rotation: each result is
// the account's latest commit on the PDS its DID document names.
func TestResyncFleet(t *testing.T) {
	const tiny = 1e-9 // keeps status events out of the plan
	f, err := fleet.New(fleet.Options{Workload: fleet.Workload{Hosts: 2, AccountsPerHost: 3, Seed: 11,
		IdentityShare: tiny, DeactivateShare: tiny, DeleteAccountShare: tiny, SyncShare: tiny, MultiOpShare: 0.5}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	for range 80 {
		if _, err := f.Step(); err != nil {
			t.Fatal(err)
		}
	}
	col := newCollector()
	rs := newResyncer(t, Config{Identities: newResolver(t, f.PLCURL()), OnResult: col.onResult})
	check := func(dids map[string]*fleet.Host) {
		t.Helper()
		for did, h := range dids {
			if !rs.Enqueue(did, h.Name) {
				t.Fatal("Enqueue refused")
			}
		}
		for did, g := range col.collect(t, len(dids)) {
			h := dids[did]
			if g.outcome != OK {
				t.Fatalf("%s: %s %v", did, g.outcome, g.err)
			}
			c, rev := latestCommit(t, h, did)
			if g.commit.String() != c || g.rev != rev || g.pds != h.Name {
				t.Fatalf("%s: resynced %s %s from %s, PDS has %s %s on %s", did, g.commit, g.rev, g.pds, c, rev, h.Name)
			}
			if !cid.Sum(cid.CodecDagCBOR, g.block).Equal(g.commit) {
				t.Fatalf("%s: commit block does not hash to the commit", did)
			}
		}
	}
	all := map[string]*fleet.Host{}
	for _, h := range f.Hosts() {
		for _, did := range h.Accounts() {
			all[did] = h
		}
	}
	check(all)

	// A migration: the break is reported by the old host, the repo lives
	// on the new one.
	hosts := f.Hosts()
	moved := hosts[0].Accounts()[0]
	if err := f.Migrate(moved, hosts[1]); err != nil {
		t.Fatal(err)
	}
	rs.Enqueue(moved, hosts[0].Name)
	g := col.next(t)
	c, _ := latestCommit(t, hosts[1], moved)
	if g.outcome != OK || g.pds != hosts[1].Name || g.commit.String() != c {
		t.Fatalf("migrated account: %s from %s (%v)", g.outcome, g.pds, g.err)
	}
	// A key rotation after the key was cached by the resyncs above.
	rotated := hosts[1].Accounts()[1]
	if err := f.RotateKey(rotated); err != nil {
		t.Fatal(err)
	}
	check(map[string]*fleet.Host{rotated: hosts[1]})
}

// fakePDS serves getRepo per DID from a handler table, on 127.0.0.1 under
// the name localhost:PORT, with its accounts in a fake PLC.
type fakePDS struct {
	t        *testing.T
	srv      *httptest.Server
	name     string
	plc      *plc.Server
	mu       sync.Mutex
	handlers map[string]http.HandlerFunc
	requests map[string]int
}

func newFakePDS(t *testing.T) *fakePDS {
	p := &fakePDS{t: t, plc: plc.New(), handlers: map[string]http.HandlerFunc{}, requests: map[string]int{}}
	if err := p.plc.Start(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.plc.Close() })
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		did := r.URL.Query().Get("did")
		p.mu.Lock()
		h := p.handlers[did]
		p.requests[did]++
		p.mu.Unlock()
		if r.URL.Path != "/xrpc/com.atproto.sync.getRepo" || h == nil {
			http.Error(w, "unexpected", http.StatusTeapot)
			return
		}
		h(w, r)
	}))
	t.Cleanup(p.srv.Close)
	_, port, _ := net.SplitHostPort(p.srv.Listener.Addr().String())
	p.name = "localhost:" + port
	return p
}

// add registers did (key from tr unless keyMB is set) with handler h.
func (p *fakePDS) add(did, keyMB string, h http.HandlerFunc) {
	p.t.Helper()
	if err := p.plc.Put(did, plc.Doc{PDS: "http://" + p.name, Key: keyMB}); err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.handlers[did] = h
	p.mu.Unlock()
}

func (p *fakePDS) count(did string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[did]
}

func serveCAR(b []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.ipld.car")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	}
}

// serveChunked hides the length, so only the bounded read can stop it.
func serveChunked(b []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i < len(b); i += 1000 {
			w.Write(b[i:min(i+1000, len(b))])
			w.(http.Flusher).Flush()
		}
	}
}

func serveError(code int, name string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if name != "" {
			fmt.Fprintf(w, `{"error":%q,"message":"test"}`, name)
		}
	}
}

// did returns the n-th test did:plc (24 base32 characters).
func did(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	b := []byte("aaaaaaaaaaaaaaaaaaaaaaaa")
	for i := len(b) - 1; n > 0; i-- {
		b[i] = alphabet[n%32]
		n /= 32
	}
	return "did:plc:" + string(b)
}

// TestResyncOutcomes runs one DID per outcome against a fake PDS.
func TestResyncOutcomes(t *testing.T) {
	p := newFakePDS(t)
	key := newKey(t, 3)
	keyMB := key.Public().Multibase()
	type tc struct {
		name      string
		h         http.HandlerFunc
		keyMB     string
		want      Outcome
		reason    verify.Reason
		wantErr   error
		requests  int
		tamperCAR func(tr *testRepo) []byte
	}
	var flaky atomic.Int32
	cases := []tc{
		{name: "ok", want: OK, requests: 1},
		{name: "ok-chunked", want: OK, requests: 1, h: nil},
		{name: "tampered", want: VerifyError, reason: verify.ReasonBadCAR, requests: 1, tamperCAR: func(tr *testRepo) []byte {
			return rewrite(t, tr.car, func(c cid.CID, d []byte) []byte {
				if c.Equal(tr.records[1]) {
					d = append([]byte(nil), d...)
					d[3] ^= 0x20
				}
				return d
			})
		}},
		{name: "missing-record", want: VerifyError, reason: verify.ReasonMissingRecord, requests: 1, tamperCAR: func(tr *testRepo) []byte {
			return without(t, tr.car, tr.records[5])
		}},
		{name: "missing-node", want: VerifyError, reason: verify.ReasonMissingBlock, requests: 1, tamperCAR: func(tr *testRepo) []byte {
			return without(t, tr.car, tr.nodes[len(tr.nodes)-1])
		}},
		// A failed signature is fetched once more with a fresh identity.
		{name: "wrong-key", keyMB: newKey(t, 4).Public().Multibase(), want: VerifyError, reason: verify.ReasonBadSignature, requests: 2},
		{name: "404", h: serveError(404, ""), want: NotFound, wantErr: ErrRepoNotFound, requests: 1},
		{name: "RepoNotFound", h: serveError(400, "RepoNotFound"), want: NotFound, wantErr: ErrRepoNotFound, requests: 1},
		{name: "RepoDeactivated", h: serveError(400, "RepoDeactivated"), want: Deactivated, wantErr: ErrRepoDeactivated, requests: 1},
		{name: "RepoTakendown", h: serveError(400, "RepoTakendown"), want: Takendown, wantErr: ErrRepoTakendown, requests: 1},
		{name: "RepoSuspended", h: serveError(400, "RepoSuspended"), want: Suspended, wantErr: ErrRepoSuspended, requests: 1},
		{name: "400", h: serveError(400, "InvalidRequest"), want: FetchError, wantErr: ErrHTTPStatus, requests: 1},
		{name: "500", h: serveError(500, ""), want: FetchError, wantErr: ErrHTTPStatus, requests: 4},
		{name: "429", h: serveError(429, ""), want: FetchError, wantErr: ErrHTTPStatus, requests: 4},
		{name: "flaky", want: OK, requests: 3},
		// Never answers: each attempt ends at FetchTimeout.
		{name: "slow", h: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, want: FetchError, wantErr: ErrTransport, requests: 4},
		{name: "too-large", want: TooLarge, wantErr: ErrTooLarge, requests: 1},
		{name: "too-large-chunked", want: TooLarge, wantErr: ErrTooLarge, requests: 1},
	}
	small := buildRepo(t, "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", key, posts(40), time.Now())
	large := buildRepo(t, "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", key, posts(2000), time.Now())
	const maxBytes = 200 << 10
	if len(small.car) > maxBytes || len(large.car) <= maxBytes {
		t.Fatalf("repo sizes %d, %d do not straddle %d", len(small.car), len(large.car), maxBytes)
	}
	dids := map[string]tc{}
	for i, c := range cases {
		d := did(i + 1)
		tr := buildRepo(t, d, key, posts(40), time.Now())
		h := c.h
		switch {
		case c.tamperCAR != nil:
			h = serveCAR(c.tamperCAR(tr))
		case c.name == "ok-chunked":
			h = serveChunked(tr.car)
		case c.name == "flaky":
			h = func(w http.ResponseWriter, r *http.Request) {
				if flaky.Add(1) < 3 {
					serveError(503, "")(w, r)
					return
				}
				serveCAR(tr.car)(w, r)
			}
		case c.name == "too-large":
			h = serveCAR(buildRepo(t, d, key, posts(2000), time.Now()).car)
		case c.name == "too-large-chunked":
			h = serveChunked(buildRepo(t, d, key, posts(2000), time.Now()).car)
		case h == nil:
			h = serveCAR(tr.car)
		}
		mb := keyMB
		if c.keyMB != "" {
			mb = c.keyMB
		}
		p.add(d, mb, h)
		dids[d] = c
	}
	col := newCollector()
	set := metrics.NewSet()
	// FetchTimeout ends each attempt of "slow"; it must not end the others'
	// (a loaded CI box once took over 50 ms to serve too-large-chunked).
	rs := newResyncer(t, Config{Identities: newResolver(t, p.plc.URL()), OnResult: col.onResult,
		FetchTimeout: 500 * time.Millisecond, MaxRepoBytes: maxBytes, Metrics: set, Concurrency: 4})
	for d := range dids {
		if !rs.Enqueue(d, "other.example.com") {
			t.Fatal("Enqueue refused")
		}
	}
	for d, g := range col.collect(t, len(dids)) {
		c := dids[d]
		t.Run(c.name, func(t *testing.T) {
			if g.outcome != c.want || g.reason != c.reason {
				t.Fatalf("outcome %s/%s, want %s/%s (%v)", g.outcome, g.reason, c.want, c.reason, g.err)
			}
			if c.wantErr != nil && !errors.Is(g.err, c.wantErr) {
				t.Fatalf("err %v, want %v", g.err, c.wantErr)
			}
			if n := p.count(d); n != c.requests || g.attempts != c.requests {
				t.Fatalf("%d requests, %d attempts, want %d", n, g.attempts, c.requests)
			}
			if g.pds != p.name {
				t.Fatalf("fetched from %q, want %q", g.pds, p.name)
			}
		})
	}
	if n := set.GetOrCreateCounter(`relay_resyncs_total{outcome="ok"}`).Get(); n != 3 {
		t.Fatalf("ok counter %d, want 3", n)
	}
}

// TestResyncIdentityErrors: an unknown DID and a development PDS without
// AllowInsecureHosts end as identity_error without any fetch.
func TestResyncIdentityErrors(t *testing.T) {
	p := newFakePDS(t)
	key := newKey(t, 3)
	known := did(1)
	p.add(known, key.Public().Multibase(), serveError(500, ""))
	col := newCollector()
	rs, err := New(Config{Identities: newResolver(t, p.plc.URL()), OnResult: col.onResult, RetryBackoff: time.Millisecond, RatePerSecond: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	rs.Enqueue(did(2), p.name)
	if g := col.next(t); g.outcome != IdentityError || !errors.Is(g.err, identity.ErrNotFound) || g.attempts != 0 {
		t.Fatalf("unknown DID: %s %v attempts %d", g.outcome, g.err, g.attempts)
	}
	rs.Enqueue(known, p.name)
	if g := col.next(t); g.outcome != IdentityError || !errors.Is(g.err, ErrInsecureHost) || p.count(known) != 0 {
		t.Fatalf("insecure host: %s %v, %d requests", g.outcome, g.err, p.count(known))
	}
	if _, err := New(Config{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("empty config: %v", err)
	}
}

// gate is a getRepo handler that parks each request until released.
type gate struct {
	started chan string
	release chan struct{}
	car     []byte
}

func newGate(car []byte) *gate {
	return &gate{started: make(chan string, 100), release: make(chan struct{}), car: car}
}

func (g *gate) serve(w http.ResponseWriter, r *http.Request) {
	g.started <- r.URL.Query().Get("did")
	select {
	case <-g.release:
		serveCAR(g.car)(w, r)
	case <-r.Context().Done():
	}
}

// gatedSetup registers n DIDs whose repos are served behind one gate.
func gatedSetup(t *testing.T, n int) (*fakePDS, *gate, []string) {
	p := newFakePDS(t)
	key := newKey(t, 3)
	tr := buildRepo(t, did(1), key, posts(5), time.Now())
	g := newGate(tr.car)
	var dids []string
	for i := range n {
		d := did(1)
		if i > 0 {
			// Every DID gets the same CAR; only did(1) verifies.
			d = did(i + 1)
		}
		p.add(d, key.Public().Multibase(), g.serve)
		dids = append(dids, d)
	}
	return p, g, dids
}

// TestEnqueueDedup: a DID waiting is queued once; a DID being fetched is
// fetched once more after the current run.
func TestEnqueueDedup(t *testing.T) {
	p, g, dids := gatedSetup(t, 2)
	a, b := dids[0], dids[1]
	col := newCollector()
	set := metrics.NewSet()
	rs := newResyncer(t, Config{Identities: newResolver(t, p.plc.URL()), OnResult: col.onResult, Concurrency: 1, Metrics: set})
	rs.Enqueue(a, p.name)
	if s := <-g.started; s != a {
		t.Fatalf("started %s", s)
	}
	for range 3 {
		if !rs.Enqueue(b, p.name) || !rs.Enqueue(a, p.name) {
			t.Fatal("Enqueue refused")
		}
	}
	close(g.release)
	res := []got{col.next(t), col.next(t), col.next(t)}
	if err := rs.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.count(a) != 2 || p.count(b) != 1 {
		t.Fatalf("requests a=%d b=%d, want 2 and 1", p.count(a), p.count(b))
	}
	if res[0].did != a || res[0].outcome != OK {
		t.Fatalf("first result %s %s", res[0].did, res[0].outcome)
	}
	if n := set.GetOrCreateCounter("relay_resync_coalesced_total").Get(); n != 5 {
		t.Fatalf("coalesced %d, want 5", n)
	}
	select {
	case extra := <-col.ch:
		t.Fatalf("unexpected extra result for %s", extra.did)
	default:
	}
}

// TestQueueBounded: Enqueue refuses beyond QueueSize and after Close.
func TestQueueBounded(t *testing.T) {
	p, g, dids := gatedSetup(t, 4)
	col := newCollector()
	set := metrics.NewSet()
	rs := newResyncer(t, Config{Identities: newResolver(t, p.plc.URL()), OnResult: col.onResult, Concurrency: 1, QueueSize: 2, Metrics: set})
	rs.Enqueue(dids[0], p.name)
	<-g.started
	if !rs.Enqueue(dids[1], p.name) || !rs.Enqueue(dids[2], p.name) {
		t.Fatal("queue refused below its size")
	}
	if rs.Enqueue(dids[3], p.name) {
		t.Fatal("queue accepted beyond its size")
	}
	if n := set.GetOrCreateGauge("relay_resync_queue_length", nil).Get(); n != 2 {
		t.Fatalf("queue length gauge %v", n)
	}
	close(g.release)
	col.collect(t, 3)
	rs.Close()
	if rs.Enqueue(dids[3], p.name) {
		t.Fatal("Enqueue accepted after Close")
	}
	if n := set.GetOrCreateCounter("relay_resync_rejected_total").Get(); n != 2 {
		t.Fatalf("rejected %d, want 2", n)
	}
}

// TestCloseCancels: Close during a fetch returns, delivers nothing for the
// running and waiting DIDs, and counts them canceled.
func TestCloseCancels(t *testing.T) {
	p, g, dids := gatedSetup(t, 3)
	col := newCollector()
	set := metrics.NewSet()
	rs := newResyncer(t, Config{Identities: newResolver(t, p.plc.URL()), OnResult: col.onResult, Concurrency: 1, Metrics: set})
	for _, d := range dids {
		rs.Enqueue(d, p.name)
	}
	<-g.started
	rs.Close()
	rs.Close()
	select {
	case r := <-col.ch:
		t.Fatalf("result after Close: %s %s", r.did, r.outcome)
	default:
	}
	if n := set.GetOrCreateCounter("relay_resync_canceled_total").Get(); n != 3 {
		t.Fatalf("canceled %d, want 3", n)
	}
	if n := set.GetOrCreateGauge("relay_resync_in_flight", nil).Get(); n != 0 {
		t.Fatalf("in flight %v after Close", n)
	}
}

// TestDrain: Drain delivers everything queued, then refuses new work; a
// Drain whose context ends cancels the rest.
func TestDrain(t *testing.T) {
	p, g, dids := gatedSetup(t, 3)
	close(g.release)
	col := newCollector()
	rs := newResyncer(t, Config{Identities: newResolver(t, p.plc.URL()), OnResult: col.onResult, Concurrency: 2})
	for _, d := range dids {
		rs.Enqueue(d, p.name)
	}
	if err := rs.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(col.ch) != 3 {
		t.Fatalf("%d results after Drain, want 3", len(col.ch))
	}
	if rs.Enqueue(dids[0], p.name) {
		t.Fatal("Enqueue accepted after Drain")
	}

	p2, g2, dids2 := gatedSetup(t, 1)
	rs2 := newResyncer(t, Config{Identities: newResolver(t, p2.plc.URL()), OnResult: col.onResult})
	rs2.Enqueue(dids2[0], p2.name)
	<-g2.started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := rs2.Drain(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain with a dead context: %v", err)
	}
}

// TestRateLimit: fetches over all workers start no faster than the rate.
// N fetches at rate R with burst 1 need at least (N-1)/R; the assertion
// leaves one interval of slack for scheduling delay of the first request,
// and a slow machine only makes the run longer.
func TestRateLimit(t *testing.T) {
	const n, rate = 6, 10.0
	p, g, dids := gatedSetup(t, n)
	close(g.release)
	var mu sync.Mutex
	var starts []time.Time
	client := &http.Client{Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		return http.DefaultTransport.RoundTrip(req)
	})}
	col := newCollector()
	rs := newResyncer(t, Config{Identities: newResolver(t, p.plc.URL()), OnResult: col.onResult,
		Concurrency: 4, RatePerSecond: rate, HTTPClient: client})
	for _, d := range dids {
		rs.Enqueue(d, p.name)
	}
	col.collect(t, n)
	mu.Lock()
	defer mu.Unlock()
	if len(starts) != n {
		t.Fatalf("%d fetches, want %d", len(starts), n)
	}
	interval := time.Duration(float64(time.Second) / rate)
	if span := starts[n-1].Sub(starts[0]); span < time.Duration(n-2)*interval {
		t.Fatalf("%d fetches within %v at %v/s", n, span, rate)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
