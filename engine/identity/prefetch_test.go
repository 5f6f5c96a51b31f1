package identity

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestPrefetch: a prefetched DID is resolved once, in the background; the
// Lookup that follows joins that request or hits the cache.
func TestPrefetch(t *testing.T) {
	p := newFakePLC(t)
	r, _ := newTestResolver(t, p, Config{})
	did := plcDID(7)
	r.Prefetch([]byte(did))
	for i := 0; p.count(did) == 0; i++ {
		if i == 5000 {
			t.Fatal("Prefetch sent no request")
		}
		time.Sleep(time.Millisecond)
	}
	id, err := r.Lookup(context.Background(), did)
	if err != nil || id.Key != p.key {
		t.Fatalf("Lookup after Prefetch: %+v, %v", id, err)
	}
	r.Prefetch([]byte(did)) // cached: nothing to do
	if n := p.count(did); n != 1 {
		t.Fatalf("%d requests for one DID, want 1", n)
	}
	if r.prefetches.Get() != 1 {
		t.Fatalf("prefetches %d, want 1", r.prefetches.Get())
	}
	// Malformed DIDs and empty input are ignored.
	r.Prefetch(nil)
	r.Prefetch([]byte("did:plc:short"))
	r.Prefetch([]byte("did:key:z6Mk"))
	if r.prefetches.Get() != 1 {
		t.Fatalf("prefetches %d after bad input, want 1", r.prefetches.Get())
	}
}

// TestPrefetchBounded: against a directory that does not answer, Prefetch
// starts at most maxPrefetchFlights × PLCMaxInFlight resolutions; the rest are
// skipped, not queued, so a flood of new DIDs costs bounded goroutines.
func TestPrefetchBounded(t *testing.T) {
	p := newFakePLC(t)
	gate := make(chan struct{})
	p.setGate(gate)
	defer close(gate)
	r, _ := newTestResolver(t, p, Config{PLCMaxInFlight: 2})
	for i := range uint64(1000) {
		r.Prefetch([]byte(plcDID(1000 + i)))
	}
	r.mu.Lock()
	n := len(r.mu.flights)
	r.mu.Unlock()
	if want := maxPrefetchFlights * 2; n != want || r.prefetches.Get() != uint64(want) {
		t.Fatalf("%d flights, %d prefetches; want %d", n, r.prefetches.Get(), want)
	}
}

// TestPrefetchCachedNoAlloc: the per-frame call for a cached did:plc does
// not allocate.
func TestPrefetchCachedNoAlloc(t *testing.T) {
	p := newFakePLC(t)
	r, _ := newTestResolver(t, p, Config{})
	did := plcDID(9)
	if _, err := r.Lookup(context.Background(), did); err != nil {
		t.Fatal(err)
	}
	b := []byte(did)
	if a := testing.AllocsPerRun(100, func() { r.Prefetch(b) }); a != 0 {
		t.Fatalf("Prefetch of a cached DID allocates %v times", a)
	}
}

// TestConcurrentLookupsOneRequest: Lookups and Prefetches of one DID racing
// with its resolution's end send one request between them. A caller whose
// cache miss was read just before the flight finished must find the stored
// result, not start a second flight.
func TestConcurrentLookupsOneRequest(t *testing.T) {
	p := newFakePLC(t)
	r, _ := newTestResolver(t, p, Config{})
	ctx := context.Background()
	for n := range uint64(200) {
		did := plcDID(5000 + n)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 50 {
					if g%2 == 0 {
						r.Prefetch([]byte(did))
					}
					if _, err := r.Lookup(ctx, did); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if c := p.count(did); c != 1 {
			t.Fatalf("%s: %d requests, want 1", did, c)
		}
	}
}
