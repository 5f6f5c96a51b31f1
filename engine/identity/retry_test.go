package identity

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/internal/testutil"
)

// flakyPLC is a PLC directory (and did:web host) on 127.0.0.1 whose answer
// to the n-th request (from 1) for a DID is chosen by fate: 0 serves a
// generated document, hang never answers (until the client gives up),
// stallBody sends the headers and half the document, then nothing more,
// anything else is that HTTP status (429 with Retry-After retryAfter,
// unless empty).
type flakyPLC struct {
	srv        *httptest.Server
	key        atcrypto.PublicKey
	fate       func(did string, n int) int
	retryAfter string

	mu       sync.Mutex
	requests map[string]int // guarded by mu
	times    []time.Time    // guarded by mu; arrival of every request
	limited  int            // guarded by mu; 429s answered
	hung     atomic.Int64   // requests hanging (hang, stallBody) until the client gives up
}

const (
	hang      = -1
	stallBody = -2
)

func newFlakyPLC(t testing.TB, fate func(did string, n int) int) *flakyPLC {
	t.Helper()
	p := &flakyPLC{key: testKey(t), fate: fate, requests: map[string]int{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *flakyPLC) serve(w http.ResponseWriter, r *http.Request) {
	did := requestedDID(r)
	p.mu.Lock()
	p.requests[did]++
	n := p.requests[did]
	p.times = append(p.times, time.Now())
	status := p.fate(did, n)
	if status == http.StatusTooManyRequests {
		p.limited++
	}
	p.mu.Unlock()
	switch status {
	case 0:
		w.Header().Set("Content-Type", "application/did+ld+json")
		_, _ = w.Write(docFor(did, p.key, "https://pds.example.com", "at://handle.example.com"))
	case hang:
		p.hung.Add(1)
		<-r.Context().Done()
		p.hung.Add(-1)
	case stallBody:
		p.hung.Add(1)
		doc := docFor(did, p.key, "https://pds.example.com", "at://handle.example.com")
		w.Header().Set("Content-Length", fmt.Sprint(len(doc)))
		_, _ = w.Write(doc[:len(doc)/2])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		p.hung.Add(-1)
	default:
		if status == http.StatusTooManyRequests && p.retryAfter != "" {
			w.Header().Set("Retry-After", p.retryAfter)
		}
		w.WriteHeader(status)
	}
}

func (p *flakyPLC) count(did string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[did]
}

func (p *flakyPLC) total() (requests, limited int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.times), p.limited
}

func newFlakyResolver(t *testing.T, p *flakyPLC, cfg Config) (*Resolver, *testutil.Clock) {
	t.Helper()
	clk := testutil.NewClock(time.Unix(1_700_000_000, 0))
	cfg.PLCURL, cfg.Now, cfg.AllowInsecureHosts = p.srv.URL, clk.Now, true
	r := New(cfg)
	t.Cleanup(r.Close)
	return r, clk
}

// TestPLCTransientFailuresRetried: a did:plc answered 5xx, 429 or nothing
// at first is retried until it resolves (before, the first failure was the
// answer, cached for NegativeTTL). A DID that keeps failing gets
// PLCRetries+1 requests, a transient error cached briefly (Retry asks
// again at once); a 404 and a did:web failure are not retried.
func TestPLCTransientFailuresRetried(t *testing.T) {
	var web string
	fates := map[string][]int{
		plcDID(1): {500, 503},
		plcDID(2): {hang},
		plcDID(3): {429},
		plcDID(4): {502, 502, 502, 502, 502, 502},
		plcDID(5): {404, 404},
	}
	p := newFlakyPLC(t, func(did string, n int) int {
		if did == web {
			return 500
		}
		if f := fates[did]; n <= len(f) {
			return f[n-1]
		}
		return 0
	})
	p.retryAfter = "0"
	web = fmt.Sprintf("did:web:localhost%%3A%d", p.srv.Listener.Addr().(*net.TCPAddr).Port)
	r, clk := newFlakyResolver(t, p, Config{PLCRetries: 2, PLCRetryBackoff: time.Millisecond,
		PLCRequestTimeout: 200 * time.Millisecond})
	ctx := context.Background()

	for _, tc := range []struct {
		did      string
		requests int
	}{{plcDID(1), 3}, {plcDID(2), 2}, {plcDID(3), 2}} {
		if id, err := r.Lookup(ctx, tc.did); err != nil || id.DID != tc.did {
			t.Fatalf("%s: %+v, %v", tc.did, id, err)
		}
		if n := p.count(tc.did); n != tc.requests {
			t.Errorf("%s: %d requests, want %d", tc.did, n, tc.requests)
		}
	}
	if got := r.plcRetries.Get(); got != 4 {
		t.Errorf("%d retries counted, want 4", got)
	}
	if got := r.plcLimited.Get(); got != 1 {
		t.Errorf("%d 429s counted, want 1", got)
	}

	broken := plcDID(4)
	_, err := r.Lookup(ctx, broken)
	if !errors.Is(err, ErrServerError) || !errors.Is(err, ErrHTTPStatus) || !IsTransient(err) || !r.Retryable(broken, err) {
		t.Fatalf("always 502: %v (transient %v)", err, IsTransient(err))
	}
	if n := p.count(broken); n != 3 {
		t.Fatalf("always 502: %d requests, want PLCRetries+1 = 3", n)
	}
	if _, err := r.Lookup(ctx, broken); !errors.Is(err, ErrServerError) || !IsTransient(err) || p.count(broken) != 3 {
		t.Fatalf("cached transient failure: %v after %d requests", err, p.count(broken))
	}
	if _, err := r.Retry(ctx, broken); !errors.Is(err, ErrServerError) || p.count(broken) != 6 {
		t.Fatalf("Retry: %v after %d requests, want 6", err, p.count(broken))
	}
	clk.Advance(plcFailureTTL + time.Second)
	if _, err := r.Lookup(ctx, broken); err != nil || p.count(broken) != 7 {
		t.Fatalf("after plcFailureTTL: %v after %d requests, want a fresh resolution", err, p.count(broken))
	}

	gone := plcDID(5)
	for range 2 {
		if _, err := r.Retry(ctx, gone); !errors.Is(err, ErrNotFound) || IsTransient(err) || r.Retryable(gone, err) {
			t.Fatalf("404: %v", err)
		}
	}
	if n := p.count(gone); n != 1 {
		t.Fatalf("404: %d requests, want 1 (definitive, cached)", n)
	}

	for range 2 {
		if _, err := r.Retry(ctx, web); !errors.Is(err, ErrServerError) || r.Retryable(web, err) {
			t.Fatalf("did:web 500: %v, retryable %v", err, r.Retryable(web, err))
		}
	}
	if n := p.count(web); n != 1 {
		t.Fatalf("did:web 500: %d requests, want 1 (no retries, cached)", n)
	}
}

// TestPLCRetryAfterPausesEveryRequest: a 429 with Retry-After: 1 holds
// back every PLC request, of any DID, for a second; a Retry-After beyond
// PLCMaxRetryAfter is cut to it.
func TestPLCRetryAfterPausesEveryRequest(t *testing.T) {
	first := plcDID(1)
	p := newFlakyPLC(t, func(did string, n int) int {
		if did == first && n == 1 {
			return http.StatusTooManyRequests
		}
		return 0
	})
	p.retryAfter = "1"
	r, _ := newFlakyResolver(t, p, Config{PLCMaxRate: 1000})
	ctx := context.Background()
	if _, err := r.Lookup(ctx, first); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			if _, err := r.Lookup(ctx, plcDID(uint64(10+i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	p.mu.Lock()
	times := append([]time.Time(nil), p.times...)
	p.mu.Unlock()
	if len(times) != 7 {
		t.Fatalf("%d requests, want 7", len(times))
	}
	for i, at := range times[1:] {
		if gap := at.Sub(times[0]); gap < 900*time.Millisecond {
			t.Errorf("request %d sent %v after the 429, want the 1 s Retry-After", i+2, gap)
		}
	}
	if rate := r.plc.current(); rate >= 1000 {
		t.Errorf("pace %v after a 429, want it cut below 1000", rate)
	}

	// An hour-long Retry-After is cut to PLCMaxRetryAfter.
	q := newFlakyPLC(t, func(did string, n int) int {
		if n == 1 {
			return http.StatusTooManyRequests
		}
		return 0
	})
	q.retryAfter = "3600"
	r2, _ := newFlakyResolver(t, q, Config{PLCMaxRetryAfter: 200 * time.Millisecond})
	began := time.Now()
	if _, err := r2.Lookup(ctx, first); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > 30*time.Second {
		t.Fatalf("Lookup took %v: Retry-After not bounded", d)
	}
}

// TestPLCRateLimitAdapts: a directory that accepts 200 requests a second
// (a token bucket of 20) and answers 429 beyond, with Retry-After: 0, gets
// 300 new DIDs at once from a resolver allowed 1,000 a second. The pace
// drops to what the directory accepts, so every DID resolves and the
// requests stay within a small multiple of one per DID (before: a burst of
// 429s, each a failed resolution cached for a minute). Without a pause,
// each cut still costs the requests sent within one round trip: more on a
// slow machine. Hedging is off: on a machine slow enough to hedge, the
// directory would count 429s to hedges cancelled before their answer.
func TestPLCRateLimitAdapts(t *testing.T) {
	const dids, rate, burst = 300, 200.0, 20.0
	var mu sync.Mutex
	tokens, last := burst, time.Now()
	p := newFlakyPLC(t, func(string, int) int {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		tokens = min(burst, tokens+now.Sub(last).Seconds()*rate)
		last = now
		if tokens < 1 {
			return http.StatusTooManyRequests
		}
		tokens--
		return 0
	})
	p.retryAfter = "0"
	r, _ := newFlakyResolver(t, p, Config{PLCMaxRate: 1000, PLCHedgeAfter: -1})
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range dids {
		wg.Go(func() {
			if _, err := r.Lookup(ctx, plcDID(uint64(100+i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	requests, limited := p.total()
	t.Logf("%d requests for %d DIDs, %d answered 429, pace now %.0f/s", requests, dids, limited, r.plc.current())
	if limited == 0 {
		t.Error("the directory never rate-limited: the test does not test the limiter")
	}
	if requests > 2*dids {
		t.Errorf("%d requests for %d DIDs: the pace did not adapt", requests, dids)
	}
	if got := r.plcLimited.Get(); got != uint64(limited) {
		t.Errorf("relay_identity_plc_rate_limited_total %d, want %d", got, limited)
	}
	if rate := r.plc.current(); rate > 500 {
		t.Errorf("pace %v, want it far below PLCMaxRate after the 429s", rate)
	}
}

// TestPLCLimiter: one cut per round of 429s, the floor, the recovery.
func TestPLCLimiter(t *testing.T) {
	l := newPLCLimiter(100, time.Second)
	ctx := context.Background()
	r0, err := l.wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l.limited(r0, 0)
	l.limited(r0, 0) // the same round: no second cut
	if got := l.current(); got != 70 {
		t.Fatalf("pace %v after one round of 429s, want 70", got)
	}
	r1, _ := l.wait(ctx)
	l.limited(r1, 0)
	if got := l.current(); got != 49 {
		t.Fatalf("pace %v after two rounds, want 49", got)
	}
	for range 100 {
		l.mu.Lock()
		r := l.round // a request's round, without waiting for its turn
		l.mu.Unlock()
		l.limited(r, 0)
	}
	if got := l.current(); got != 1 {
		t.Fatalf("pace %v after 100 rounds, want the floor 1", got)
	}
	for range 1000 {
		l.answered()
	}
	if got := l.current(); got < 40 || got >= 100 {
		t.Fatalf("pace %v after 1000 answers, want it recovering (about sqrt(2·1000) + 1)", got)
	}
	for range 100_000 {
		l.answered()
	}
	if got := l.current(); got != 100 {
		t.Fatalf("pace %v, want it back at the ceiling", got)
	}
}

func TestRetryAfterHeader(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{{"", -1}, {"2", 2 * time.Second}, {" 0 ", 0}, {"-3", -1}, {"soon", -1},
		{time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat), 0}} {
		h := http.Header{}
		if tc.v != "" {
			h.Set("Retry-After", tc.v)
		}
		if got := retryAfter(h); got != tc.want {
			t.Errorf("Retry-After %q: %v, want %v", tc.v, got, tc.want)
		}
	}
	h := http.Header{"Retry-After": {time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)}}
	if got := retryAfter(h); got < 50*time.Second || got > time.Minute {
		t.Errorf("Retry-After a minute from now: %v", got)
	}
}

// TestPLCBreaker: once every PLC request has failed for a while, the
// resolver stops sending them but one probe per probeEvery; resolutions
// fail at once with ErrUnavailable (transient). The first answer closes
// the breaker.
func TestPLCBreaker(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	p := newFlakyPLC(t, func(string, int) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	r, _ := newFlakyResolver(t, p, Config{PLCRetries: 1, PLCRetryBackoff: time.Millisecond})
	r.plc.breakAfter, r.plc.probeEvery = 50*time.Millisecond, 200*time.Millisecond
	ctx := context.Background()
	gauge := func() float64 {
		return r.Metrics().GetOrCreateGauge("relay_identity_plc_unavailable", nil).Get()
	}
	for i := range breakerStreak / 2 {
		if _, err := r.Lookup(ctx, plcDID(uint64(i))); !errors.Is(err, ErrServerError) {
			t.Fatalf("DID %d: %v", i, err)
		}
	}
	time.Sleep(60 * time.Millisecond)
	if gauge() != 1 {
		t.Fatal("breaker not open after a streak of failures")
	}
	before, _ := p.total()
	// The first resolution gets the probe (503, then no retry: open), the
	// next ones no request at all.
	for i := range 5 {
		_, err := r.Lookup(ctx, plcDID(uint64(100+i)))
		if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrServerError) || !IsTransient(err) {
			t.Fatalf("open breaker: %v", err)
		}
		if errors.Is(err, ErrUnavailable) && (!errors.Is(err, ErrTransport) || reasonOf(err) != ReasonUnavailable) {
			t.Fatalf("ErrUnavailable is a transport error of its own reason: %v", err)
		}
	}
	if after, _ := p.total(); after != before+1 {
		t.Fatalf("%d requests while open, want the 1 probe", after-before)
	}
	if n := r.resolveErrs[ReasonUnavailable].Get(); n < 4 {
		t.Fatalf("%d resolutions failed unavailable, want at least 4", n)
	}

	down.Store(false)
	time.Sleep(250 * time.Millisecond) // the next probe is due
	if _, err := r.Lookup(ctx, plcDID(200)); err != nil {
		t.Fatalf("probe after recovery: %v", err)
	}
	if gauge() != 0 {
		t.Fatal("breaker still open after an answer")
	}
	for i := range 5 {
		if _, err := r.Lookup(ctx, plcDID(uint64(300+i))); err != nil {
			t.Fatal(err)
		}
	}
}
