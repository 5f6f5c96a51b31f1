package identity

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/internal/testutil"
)

// fakePLC is a PLC directory on 127.0.0.1. Unknown DIDs get a generated
// document unless listed in status; gate, when set, holds every request
// until it is closed.
type fakePLC struct {
	srv *httptest.Server
	key atcrypto.PublicKey

	mu       sync.Mutex
	requests map[string]int // guarded by mu
	status   map[string]int // guarded by mu; DID → forced status
	body     map[string][]byte
	gate     chan struct{}
	active   int // guarded by mu; requests inside the handler
	maxAct   int // guarded by mu
	newConns atomic.Int64
	open     atomic.Int64 // connections currently open
	maxOpen  atomic.Int64
}

func newFakePLC(t testing.TB) *fakePLC {
	t.Helper()
	k, err := atcrypto.GeneratePrivateKey(atcrypto.K256)
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePLC{key: k.Public(), requests: map[string]int{}, status: map[string]int{}, body: map[string][]byte{}}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			p.newConns.Add(1)
			o := p.open.Add(1)
			for m := p.maxOpen.Load(); o > m && !p.maxOpen.CompareAndSwap(m, o); m = p.maxOpen.Load() {
			}
		case http.StateClosed, http.StateHijacked:
			p.open.Add(-1)
		}
	}
	p.srv.Start()
	t.Cleanup(p.srv.Close)
	return p
}

// requestedDID is the DID a test directory is asked for: a PLC path
// (/did:plc:...), or a did:web's well-known document named by the host.
func requestedDID(r *http.Request) string {
	did := strings.TrimPrefix(r.URL.Path, "/")
	if strings.HasSuffix(did, ".well-known/did.json") {
		did = "did:web:" + strings.ReplaceAll(r.Host, ":", "%3A")
	}
	return did
}

func (p *fakePLC) serve(w http.ResponseWriter, r *http.Request) {
	did := requestedDID(r)
	p.mu.Lock()
	p.requests[did]++
	p.active++
	p.maxAct = max(p.maxAct, p.active)
	gate, status, body := p.gate, p.status[did], p.body[did]
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.active--
		p.mu.Unlock()
	}()
	if gate != nil {
		<-gate
	}
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	if body == nil {
		body = docFor(did, p.key, "https://pds.example.com", "at://"+strings.ReplaceAll(did[8:], "%3A", "-")+".example.com")
	}
	w.Header().Set("Content-Type", "application/did+ld+json")
	_, _ = w.Write(body)
}

func (p *fakePLC) count(did string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[did]
}

func (p *fakePLC) setGate(g chan struct{}) {
	p.mu.Lock()
	p.gate = g
	p.mu.Unlock()
}

func docFor(did string, key atcrypto.PublicKey, pds, aka string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"alsoKnownAs":[%q],"verificationMethod":[{"id":"#atproto","type":"Multikey","controller":%q,"publicKeyMultibase":%q}],"service":[{"id":"#atproto_pds","type":"AtprotoPersonalDataServer","serviceEndpoint":%q}]}`,
		did, aka, did, key.Multibase(), pds)
}

// plcDID returns the n-th synthetic did:plc.
func plcDID(n uint64) string {
	var raw [15]byte
	binary.BigEndian.PutUint64(raw[7:], n)
	raw[0] = byte(n) // spread shards
	return "did:plc:" + strings.ToLower(base32.StdEncoding.EncodeToString(raw[:]))
}

func newTestResolver(t *testing.T, p *fakePLC, cfg Config) (*Resolver, *testutil.Clock) {
	t.Helper()
	clk := testutil.NewClock(time.Unix(1_700_000_000, 0))
	cfg.PLCURL = p.srv.URL
	cfg.Now = clk.Now
	// The fake directory is on 127.0.0.1: the development switch lets the
	// resolver reach it (tests of the strict mode build their own).
	cfg.AllowInsecureHosts = true
	r := New(cfg)
	t.Cleanup(r.Close)
	return r, clk
}

func TestLookupCaches(t *testing.T) {
	p := newFakePLC(t)
	r, _ := newTestResolver(t, p, Config{})
	did := plcDID(1)
	ctx := context.Background()
	id, err := r.Lookup(ctx, did)
	if err != nil {
		t.Fatal(err)
	}
	if id.DID != did || id.Key != p.key || id.PDSHost != "pds.example.com" || id.Handle != did[8:]+".example.com" {
		t.Fatalf("identity %+v", id)
	}
	again, err := r.Lookup(ctx, did)
	if err != nil || again != id {
		t.Fatalf("cached lookup = %+v, %v", again, err)
	}
	if n := p.count(did); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := r.Lookup(ctx, did); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("cache hit allocates %v times", allocs)
	}
	if r.hits.Get() < 100 || r.misses.Get() != 1 {
		t.Fatalf("hits %d misses %d", r.hits.Get(), r.misses.Get())
	}
}

func TestTTLExpiry(t *testing.T) {
	p := newFakePLC(t)
	r, clk := newTestResolver(t, p, Config{TTL: time.Hour})
	did := plcDID(2)
	ctx := context.Background()
	for range 2 {
		if _, err := r.Lookup(ctx, did); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(59 * time.Minute)
	if _, err := r.Lookup(ctx, did); err != nil || p.count(did) != 1 {
		t.Fatalf("before TTL: %v, %d requests", err, p.count(did))
	}
	clk.Advance(2 * time.Minute)
	if _, err := r.Lookup(ctx, did); err != nil || p.count(did) != 2 {
		t.Fatalf("after TTL: %v, %d requests", err, p.count(did))
	}
}

func TestNegativeTTL(t *testing.T) {
	p := newFakePLC(t)
	r, clk := newTestResolver(t, p, Config{NegativeTTL: 30 * time.Second})
	gone, missing, broken := plcDID(3), plcDID(4), plcDID(5)
	p.status[gone] = http.StatusGone
	p.status[missing] = http.StatusNotFound
	p.status[broken] = http.StatusBadRequest // definitive, unlike a 5xx (retry_test.go)
	ctx := context.Background()
	f := func(did string, want error, wantRequests int) {
		t.Helper()
		_, err := r.Lookup(ctx, did)
		if !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", did, err, want)
		}
		if n := p.count(did); n != wantRequests {
			t.Fatalf("%s: %d requests, want %d", did, n, wantRequests)
		}
	}
	f(gone, ErrNotFound, 1)
	f(missing, ErrNotFound, 1)
	f(broken, ErrHTTPStatus, 1)
	f(gone, ErrNotFound, 1)
	f(broken, ErrHTTPStatus, 1)
	if r.negHits.Get() != 2 || r.resolveErrs[ReasonNotFound].Get() != 2 || r.resolveErrs[ReasonHTTPStatus].Get() != 1 {
		t.Fatalf("negative hits %d, not_found %d, http_status %d", r.negHits.Get(),
			r.resolveErrs[ReasonNotFound].Get(), r.resolveErrs[ReasonHTTPStatus].Get())
	}
	clk.Advance(31 * time.Second)
	f(gone, ErrNotFound, 2)
}

func TestCoalescing(t *testing.T) {
	p := newFakePLC(t)
	r, _ := newTestResolver(t, p, Config{})
	gate := make(chan struct{})
	p.setGate(gate)
	did := plcDID(6)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := r.Lookup(context.Background(), did)
			errs <- err
		})
	}
	// Every caller but the first joins the flight; wait until they have.
	for r.coalesced.Get() != n-1 {
		runtime.Gosched()
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if c := p.count(did); c != 1 {
		t.Fatalf("%d requests for %d concurrent lookups, want 1", c, n)
	}
}

func TestLookupContextCancel(t *testing.T) {
	p := newFakePLC(t)
	r, _ := newTestResolver(t, p, Config{})
	gate := make(chan struct{})
	p.setGate(gate)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	did := plcDID(7)
	if _, err := r.Lookup(ctx, did); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	close(gate)
	// The shared request still completes and fills the cache.
	if _, err := r.Lookup(context.Background(), did); err != nil {
		t.Fatal(err)
	}
}

func TestPurge(t *testing.T) {
	p := newFakePLC(t)
	r, _ := newTestResolver(t, p, Config{})
	did := plcDID(8)
	ctx := context.Background()
	if _, err := r.Lookup(ctx, did); err != nil {
		t.Fatal(err)
	}
	r.Purge(did)
	if _, err := r.Lookup(ctx, did); err != nil || p.count(did) != 2 {
		t.Fatalf("after purge: %v, %d requests", err, p.count(did))
	}
	// A purge during a resolution detaches it: its result is not cached.
	gate := make(chan struct{})
	p.setGate(gate)
	r.Purge(did)
	done := make(chan error)
	go func() {
		_, err := r.Lookup(ctx, did)
		done <- err
	}()
	for p.count(did) != 3 {
		runtime.Gosched()
	}
	r.Purge(did)
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p.setGate(nil)
	if _, err := r.Lookup(ctx, did); err != nil || p.count(did) != 4 {
		t.Fatalf("after purge during flight: %v, %d requests, want 4", err, p.count(did))
	}
}

func TestInFlightBound(t *testing.T) {
	p := newFakePLC(t)
	const bound = 3
	r, _ := newTestResolver(t, p, Config{PLCMaxInFlight: bound})
	gate := make(chan struct{})
	p.setGate(gate)
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			if _, err := r.Lookup(context.Background(), plcDID(uint64(100+i))); err != nil {
				t.Error(err)
			}
		})
	}
	for {
		p.mu.Lock()
		a := p.active
		p.mu.Unlock()
		if a == bound {
			break
		}
		runtime.Gosched()
	}
	if got := r.inFlight[methodPLC].Load(); got != bound {
		t.Fatalf("in-flight gauge %d, want %d", got, bound)
	}
	close(gate)
	wg.Wait()
	if p.maxAct != bound {
		t.Fatalf("server saw %d concurrent requests, want %d", p.maxAct, bound)
	}
}

func TestDIDWeb(t *testing.T) {
	p := newFakePLC(t)
	port := p.srv.Listener.Addr().(*net.TCPAddr).Port
	did := fmt.Sprintf("did:web:localhost%%3A%d", port)
	r, _ := newTestResolver(t, p, Config{AllowInsecureHosts: true})
	id, err := r.Lookup(context.Background(), did)
	if err != nil {
		t.Fatal(err)
	}
	if id.Key != p.key || id.PDSHost != "pds.example.com" {
		t.Fatalf("identity %+v", id)
	}
	// Without AllowInsecureHosts a did:web port is malformed: no request.
	strict := New(Config{PLCURL: p.srv.URL, PLCAllowPrivate: true})
	t.Cleanup(strict.Close)
	if _, err := strict.Lookup(context.Background(), did); !errors.Is(err, ErrBadDID) {
		t.Fatalf("did:web with a port, strict: %v, want ErrBadDID", err)
	}
	if n := p.count(did); n != 1 {
		t.Fatalf("%d requests for %s, want the dev resolver's 1", n, did)
	}
}

func TestDocumentLimits(t *testing.T) {
	p := newFakePLC(t)
	r, _ := newTestResolver(t, p, Config{MaxDocBytes: 1024, PLCRequestTimeout: 200 * time.Millisecond})
	big, bad, mismatch := plcDID(20), plcDID(21), plcDID(22)
	p.body[big] = bytes.Repeat([]byte(" "), 4096)
	p.body[bad] = []byte("not json")
	p.body[mismatch] = docFor(plcDID(23), p.key, "https://pds.example.com", "at://x.example.com")
	f := func(did string, want error) {
		t.Helper()
		if _, err := r.Lookup(context.Background(), did); !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", did, err, want)
		}
	}
	f(big, ErrTooLarge)
	f(bad, ErrBadJSON)
	f(mismatch, ErrIDMismatch)
	f("did:plc:short", ErrBadDID)
	f("did:example:123", ErrUnsupportedMethod)
	gate := make(chan struct{})
	defer close(gate)
	p.setGate(gate)
	f(plcDID(24), ErrTimeout)
}

func TestClose(t *testing.T) {
	p := newFakePLC(t)
	r, _ := newTestResolver(t, p, Config{})
	gate := make(chan struct{})
	defer close(gate)
	p.setGate(gate)
	done := make(chan error)
	go func() {
		_, err := r.Lookup(context.Background(), plcDID(30))
		done <- err
	}()
	for p.count(plcDID(30)) != 1 {
		runtime.Gosched()
	}
	r.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("in-flight lookup at Close: %v", err)
	}
	if _, err := r.Lookup(context.Background(), plcDID(31)); !errors.Is(err, ErrClosed) {
		t.Fatalf("lookup after Close: %v", err)
	}
}

func TestMetricsExported(t *testing.T) {
	p := newFakePLC(t)
	r, _ := newTestResolver(t, p, Config{})
	if _, err := r.Lookup(context.Background(), plcDID(40)); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	r.Metrics().WritePrometheus(&buf)
	for _, want := range []string{
		"relay_identity_cache_hits_total 0",
		"relay_identity_cache_misses_total 1",
		`relay_identity_resolve_errors_total{reason="not_found"} 0`,
		`relay_identity_resolve_errors_total{reason="bad_pds"} 0`,
		"relay_identity_cache_entries 1",
		"relay_identity_inflight 0",
		"relay_identity_hosts 1",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, buf.String())
		}
	}
}

// TestNoResourceGrowth runs thousands of resolutions against one local
// server and checks connections are reused (never more than PLCMaxInFlight
// opened) and goroutines return to where they started.
func TestNoResourceGrowth(t *testing.T) {
	p := newFakePLC(t)
	const bound = 8
	r, _ := newTestResolver(t, p, Config{PLCMaxInFlight: bound})
	before := runtime.NumGoroutine()
	const total, workers = 4000, 16
	var next atomic.Uint64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > total {
					return
				}
				if _, err := r.Lookup(context.Background(), plcDID(1000+n)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	conns := p.newConns.Load()
	// The transport caps connections at PLCMaxInFlight; the server may see one
	// or two more because it notices a client-side close late.
	if m := p.maxOpen.Load(); m > bound+2 || conns > 2*bound {
		t.Fatalf("%d connections open at once (cap %d), %d opened for %d lookups", m, bound, conns, total)
	}
	t.Logf("%d lookups over %d connections (at most %d open at once)", total, conns, p.maxOpen.Load())
	// Idle keep-alive connections hold a read and a write goroutine on the
	// client and one on the server.
	if g := runtime.NumGoroutine(); g > before+3*int(conns)+2 {
		t.Fatalf("goroutines %d after, %d before, %d connections", g, before, conns)
	}
	r.Close()
	p.srv.CloseClientConnections()
	for i := 0; runtime.NumGoroutine() > before; i++ {
		if i > 1_000_000 {
			t.Fatalf("goroutines still %d after Close, %d before", runtime.NumGoroutine(), before)
		}
		runtime.Gosched()
	}
	if st := r.Stats(); st.Entries != total {
		t.Fatalf("cache holds %d entries, want %d", st.Entries, total)
	}
}

// TestCachedNeverResolves: Cached answers from the cache only; a miss sends
// no request.
func TestCachedNeverResolves(t *testing.T) {
	p := newFakePLC(t)
	r, _ := newTestResolver(t, p, Config{})
	did, gone := plcDID(60), plcDID(61)
	p.status[gone] = http.StatusGone
	for _, d := range []string{did, gone, "did:web:example.com", "not a did"} {
		if _, ok, err := r.Cached(d); ok || err != nil {
			t.Fatalf("Cached(%q) on an empty cache: %v, %v", d, ok, err)
		}
	}
	if p.count(did)+p.count(gone) != 0 || r.resolves.Get() != 0 {
		t.Fatal("Cached sent a request")
	}
	want, err := r.Lookup(context.Background(), did)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = r.Lookup(context.Background(), gone)
	if id, ok, err := r.Cached(did); !ok || err != nil || id != want {
		t.Fatalf("Cached after Lookup: %+v, %v, %v", id, ok, err)
	}
	if _, ok, err := r.Cached(gone); !ok || !errors.Is(err, ErrNotFound) {
		t.Fatalf("Cached of a cached failure: %v, %v", ok, err)
	}
	if a := testing.AllocsPerRun(100, func() { _, _, _ = r.Cached(did) }); a != 0 {
		t.Fatalf("Cached hit allocates %v times", a)
	}
}
