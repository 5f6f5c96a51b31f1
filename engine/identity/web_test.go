package identity

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrelay/relay/internal/testutil"
)

// hangHost is a did:web host on 127.0.0.1 that accepts connections, reads
// the request and never answers. Connections open at once are counted in
// a gauge that may be shared between hosts.
type hangHost struct {
	port int
	open *connGauge
}

// connGauge counts connections open now, at most, and in total.
type connGauge struct {
	mu                 sync.Mutex
	now, most, accepts int
}

func (g *connGauge) add(d int) {
	g.mu.Lock()
	g.now += d
	if d > 0 {
		g.accepts++
	}
	g.most = max(g.most, g.now)
	g.mu.Unlock()
}

func (g *connGauge) get() (now, most, accepts int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.now, g.most, g.accepts
}

func newHangHost(t *testing.T, g *connGauge) *hangHost {
	t.Helper()
	addr := testutil.TCPServer(t, func(c net.Conn) {
		g.add(1)
		defer g.add(-1)
		// Read until the client gives up; never write.
		var b [4096]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				return
			}
		}
	})
	return &hangHost{port: addr.Port, open: g}
}

// did is the host's did:web (development form, with its port).
func (h *hangHost) did() string {
	return fmt.Sprintf("did:web:localhost%%3A%d", h.port)
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (r *Resolver) flightCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.mu.flights)
}

// TestWebDoesNotBlockPLC is the head-of-line attack through real sockets:
// 40 did:web hosts that never answer (more than the 32 requests PLC and
// did:web used to share) are being resolved, with a did:web timeout as long
// as PLC's; a did:plc lookup must still be answered at once by the fast
// directory instead of queueing behind them.
func TestWebDoesNotBlockPLC(t *testing.T) {
	p := newFakePLC(t)
	var g connGauge
	const n = 40
	hosts := make([]*hangHost, n)
	for i := range hosts {
		hosts[i] = newHangHost(t, &g)
	}
	r, _ := newTestResolver(t, p, Config{WebRequestTimeout: 10 * time.Second})
	ctx := context.Background()
	webDone := make(chan error, n)
	for _, h := range hosts {
		go func() {
			_, err := r.Lookup(ctx, h.did())
			webDone <- err
		}()
	}
	waitFor(t, "did:web lookups pending at the hosts", func() bool {
		_, _, accepts := g.get()
		return r.flightCount() == n && accepts >= 1
	})

	began := time.Now()
	id, err := r.Lookup(ctx, plcDID(77))
	took := time.Since(began)
	if err != nil || id.PDSHost != "pds.example.com" {
		t.Fatalf("did:plc lookup behind stalled did:web hosts: %+v, %v", id, err)
	}
	if took > time.Second {
		t.Fatalf("did:plc lookup took %v behind %d stalled did:web lookups", took, n)
	}
	select {
	case err := <-webDone:
		t.Fatalf("a did:web lookup ended early (%v): the stall did not hold", err)
	default:
	}
	t.Logf("did:plc answered in %v with %d did:web lookups stalled", took, n)
}

// TestWebConcurrencyLimits: did:web hosts that never answer get at most
// WebMaxPerDomain connections per domain (every host here is "localhost")
// and at most WebMaxInFlight in all, counted at the hosts.
func TestWebConcurrencyLimits(t *testing.T) {
	f := func(cfg Config, want int) {
		t.Helper()
		p := newFakePLC(t)
		var g connGauge
		cfg.WebRequestTimeout = 10 * time.Second
		r, _ := newTestResolver(t, p, cfg)
		const n = 12
		for range n {
			h := newHangHost(t, &g)
			go func() { _, _ = r.Lookup(context.Background(), h.did()) }()
		}
		waitFor(t, "the first connections", func() bool {
			_, _, accepts := g.get()
			return r.flightCount() == n && accepts >= want
		})
		// Nothing finishes while the hosts hang: any request beyond the
		// limit would arrive now.
		time.Sleep(200 * time.Millisecond)
		now, most, accepts := g.get()
		if most != want || accepts != want || now != want {
			t.Fatalf("%+v: hosts saw %d connections (%d at most, %d open), want %d", cfg, accepts, most, now, want)
		}
		if got := r.inFlight[methodWeb].Load(); got != int64(want) {
			t.Fatalf("did:web in-flight gauge %d, want %d", got, want)
		}
		r.Close()
	}
	f(Config{}, 2) // default WebMaxPerDomain
	f(Config{WebMaxPerDomain: 100, WebMaxInFlight: 3}, 3)
}

// TestWebTimeoutCoversQueue: WebRequestTimeout runs from the moment a
// did:web resolution asks for a slot, so a queue of DIDs on stalled hosts
// all fail after about one timeout, not one timeout per slot's worth.
func TestWebTimeoutCoversQueue(t *testing.T) {
	p := newFakePLC(t)
	var g connGauge
	const timeout = 300 * time.Millisecond
	r, _ := newTestResolver(t, p, Config{WebRequestTimeout: timeout})
	const n = 30 // 15 rounds of 2 per domain: 4.5 s if each waited its turn
	var wg sync.WaitGroup
	var timeouts atomic.Int64
	began := time.Now()
	for range n {
		h := newHangHost(t, &g)
		wg.Go(func() {
			if _, err := r.Lookup(context.Background(), h.did()); errors.Is(err, ErrTimeout) {
				timeouts.Add(1)
			} else {
				t.Errorf("%s: %v, want ErrTimeout", h.did(), err)
			}
		})
	}
	wg.Wait()
	took := time.Since(began)
	if timeouts.Load() != n || took > 2500*time.Millisecond {
		t.Fatalf("%d of %d lookups timed out, after %v (timeout %v)", timeouts.Load(), n, took, timeout)
	}
	if got := r.resolveErrs[ReasonTimeout].Get(); got != n {
		t.Fatalf("timeout counter %d, want %d", got, n)
	}
}

// TestWebAddressRules: did:web IP literals and (outside development) ports
// are malformed and cost no request; a name resolving to loopback is
// refused at dial time unless the development switch is on.
func TestWebAddressRules(t *testing.T) {
	p := newFakePLC(t)
	port := p.srv.Listener.Addr().(*net.TCPAddr).Port
	dev, _ := newTestResolver(t, p, Config{})
	strict := New(Config{PLCURL: p.srv.URL, PLCAllowPrivate: true})
	t.Cleanup(strict.Close)
	ctx := context.Background()
	f := func(r *Resolver, did string, want error) {
		t.Helper()
		if _, err := r.Lookup(ctx, did); !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", did, err, want)
		}
	}
	ipDID := fmt.Sprintf("did:web:127.0.0.1%%3A%d", port)
	f(dev, ipDID, ErrBadDID)
	f(strict, ipDID, ErrBadDID)
	f(strict, fmt.Sprintf("did:web:localhost%%3A%d", port), ErrBadDID)
	// https://localhost/ is 127.0.0.1:443 or [::1]:443: refused before
	// connecting, so no listener is needed.
	f(strict, "did:web:localhost", ErrRefused)
	if got := strict.resolveErrs[ReasonRefusedAddr].Get(); got != 1 {
		t.Fatalf("refused_address counter %d, want 1", got)
	}
	// The development resolver reaches the same host by name.
	f(dev, fmt.Sprintf("did:web:localhost%%3A%d", port), nil)
	if n := p.count(fmt.Sprintf("did:web:127.0.0.1%%3A%d", port)); n != 0 {
		t.Fatalf("IP-literal did:web sent %d requests", n)
	}
}

// TestPLCLoopbackNeedsSwitch: the PLC client dials public addresses only,
// unless the development switch or PLCAllowPrivate says otherwise.
func TestPLCLoopbackNeedsSwitch(t *testing.T) {
	p := newFakePLC(t)
	ctx := context.Background()
	strict := New(Config{PLCURL: p.srv.URL})
	t.Cleanup(strict.Close)
	did := plcDID(90)
	if _, err := strict.Lookup(ctx, did); !errors.Is(err, ErrRefused) {
		t.Fatalf("PLC on 127.0.0.1 without a switch: %v, want ErrRefused", err)
	}
	if n := p.count(did); n != 0 {
		t.Fatalf("refused PLC lookup sent %d requests", n)
	}
	for _, cfg := range []Config{{AllowInsecureHosts: true}, {PLCAllowPrivate: true}} {
		cfg.PLCURL = p.srv.URL
		r := New(cfg)
		t.Cleanup(r.Close)
		if _, err := r.Lookup(ctx, plcDID(91)); err != nil {
			t.Fatalf("%+v: %v", cfg, err)
		}
	}
}

func TestWebDomain(t *testing.T) {
	f := func(host, want string) {
		t.Helper()
		if got := webDomain(host); got != want {
			t.Errorf("webDomain(%q) = %q, want %q", host, got, want)
		}
	}
	f("example.com", "example.com")
	f("a.b.example.com", "example.com")
	f("alice.example.co.uk", "co.uk")
	f("localhost:5201", "localhost")
	f("pds.localhost:80", "pds.localhost")
	f("localhost", "localhost")
}

// TestPrefetchBoundPerMethod: a backlog of did:web resolutions on stalled
// hosts fills only the did:web share of Prefetch's bound; did:plc
// prefetches still start and complete.
func TestPrefetchBoundPerMethod(t *testing.T) {
	p := newFakePLC(t)
	var g connGauge
	r, _ := newTestResolver(t, p, Config{WebMaxInFlight: 1, WebRequestTimeout: 10 * time.Second})
	webBound := maxPrefetchFlights * 1
	for range webBound + 2 {
		r.Prefetch([]byte(newHangHost(t, &g).did()))
	}
	if got := r.prefetches.Get(); got != uint64(webBound) {
		t.Fatalf("%d did:web prefetches started, want the bound %d", got, webBound)
	}
	for i := range uint64(10) {
		r.Prefetch([]byte(plcDID(300 + i)))
	}
	if got := r.prefetches.Get(); got != uint64(webBound+10) {
		t.Fatalf("did:plc prefetches behind a did:web backlog: %d started, want %d", got-uint64(webBound), 10)
	}
	waitFor(t, "did:plc prefetches", func() bool {
		for i := range uint64(10) {
			if _, ok, _ := r.Cached(plcDID(300 + i)); !ok {
				return false
			}
		}
		return true
	})
}
