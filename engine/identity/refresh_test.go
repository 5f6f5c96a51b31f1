package identity

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/relay/relay/engine/atcrypto"
)

// waitRequests spins until the fake directory has seen n requests for did.
func waitRequests(t *testing.T, p *fakePLC, did string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.count(did) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests for %s, want %d", p.count(did), did, n)
		}
		runtime.Gosched()
	}
}

// TestRefreshDetachedUntilReresolve: a refresh fetches the new document at
// once but changes nothing Lookup sees (frames queued before the #identity
// event keep their identity) until Reresolve takes it, without a second
// request.
func TestRefreshDetachedUntilReresolve(t *testing.T) {
	p := newFakePLC(t)
	r, _ := newTestResolver(t, p, Config{})
	did := plcDID(21)
	ctx := context.Background()
	old, err := r.Lookup(ctx, did)
	if err != nil {
		t.Fatal(err)
	}
	k, err := atcrypto.GeneratePrivateKey(atcrypto.K256)
	if err != nil {
		t.Fatal(err)
	}
	rotated := k.Public()
	p.mu.Lock()
	p.body[did] = docFor(did, rotated, "https://pds.example.com", "at://new.example.com")
	p.mu.Unlock()

	r.Refresh([]byte(did))
	waitRequests(t, p, did, 2)
	if id, err := r.Lookup(ctx, did); err != nil || id.Key != old.Key {
		t.Fatalf("Lookup during refresh: %+v %v, want the old key", id, err)
	}
	id, err := r.Reresolve(ctx, did)
	if err != nil || id.Key != rotated || id.Handle != "new.example.com" {
		t.Fatalf("Reresolve: %+v %v, want the rotated key", id, err)
	}
	if id, err := r.Lookup(ctx, did); err != nil || id.Key != rotated {
		t.Fatalf("Lookup after Reresolve: %+v %v, want the rotated key cached", id, err)
	}
	if n := p.count(did); n != 2 {
		t.Fatalf("%d requests, want 2 (the first Lookup and the refresh)", n)
	}
	if r.refreshed.Get() != 1 || r.refreshUsed.Get() != 1 {
		t.Fatalf("refreshes %d, used %d; want 1, 1", r.refreshed.Get(), r.refreshUsed.Get())
	}
	// A refresh left over (its #identity was dropped before processing)
	// is replaced by the next one, never served for a later event.
	r.Refresh([]byte(did))
	waitRequests(t, p, did, 3)
	k2, err := atcrypto.GeneratePrivateKey(atcrypto.K256)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.body[did] = docFor(did, k2.Public(), "https://pds.example.com", "at://new.example.com")
	p.mu.Unlock()
	r.Refresh([]byte(did))
	waitRequests(t, p, did, 4)
	if id, err := r.Reresolve(ctx, did); err != nil || id.Key != k2.Public() {
		t.Fatalf("Reresolve after a replaced refresh: %+v %v, want the newest key", id, err)
	}
	// Without a pending refresh Reresolve is Purge then Lookup.
	if _, err := r.Reresolve(ctx, did); err != nil || p.count(did) != 5 {
		t.Fatalf("Reresolve without refresh: %v, %d requests, want 5", err, p.count(did))
	}
}

// TestReresolveJoinsRunningRefresh: Reresolve waits for a refresh still in
// flight, attaches it so its result is cached, and a Lookup meanwhile joins
// it instead of sending its own request.
func TestReresolveJoinsRunningRefresh(t *testing.T) {
	p := newFakePLC(t)
	gate := make(chan struct{})
	p.setGate(gate)
	r, _ := newTestResolver(t, p, Config{})
	did := plcDID(22)
	ctx := context.Background()
	r.Refresh([]byte(did))
	waitRequests(t, p, did, 1)
	type res struct {
		id  Identity
		err error
	}
	got := make(chan res, 2)
	go func() {
		id, err := r.Reresolve(ctx, did)
		got <- res{id, err}
	}()
	for {
		r.mu.Lock()
		attached := r.mu.flights[did] != nil
		r.mu.Unlock()
		if attached {
			break
		}
		runtime.Gosched()
	}
	go func() {
		id, err := r.Lookup(ctx, did)
		got <- res{id, err}
	}()
	for r.coalesced.Get() == 0 {
		runtime.Gosched()
	}
	close(gate)
	for range 2 {
		if g := <-got; g.err != nil || g.id.Key != p.key {
			t.Fatalf("waiter got %+v %v", g.id, g.err)
		}
	}
	if _, err := r.Lookup(ctx, did); err != nil || p.count(did) != 1 {
		t.Fatalf("after the refresh: %v, %d requests, want 1", err, p.count(did))
	}
}

// TestRefreshBounded: refreshes nobody takes are bounded; finished ones are
// dropped once they are older than refreshMaxAge and room is needed.
func TestRefreshBounded(t *testing.T) {
	p := newFakePLC(t)
	r, clk := newTestResolver(t, p, Config{MaxInFlight: 1})
	limit := maxPrefetchFlights * 1
	for i := range uint64(limit + 5) {
		r.Refresh([]byte(plcDID(100 + i)))
	}
	if n := r.refreshed.Get(); n != uint64(limit) {
		t.Fatalf("%d refreshes started, want %d", n, limit)
	}
	for i := range uint64(limit) {
		waitRequests(t, p, plcDID(100+i), 1)
	}
	r.wg.Wait() // every refresh finished (and stays, untaken)
	r.Refresh([]byte(plcDID(500)))
	if n := r.refreshed.Get(); n != uint64(limit) {
		t.Fatalf("full table of young refreshes took another: %d", n)
	}
	clk.Advance((refreshMaxAge + 1) * time.Second)
	r.Refresh([]byte(plcDID(500)))
	if n := r.refreshed.Get(); n != uint64(limit)+1 {
		t.Fatalf("stale refreshes not dropped: %d started", n)
	}
	r.mu.Lock()
	left := len(r.mu.refreshes)
	r.mu.Unlock()
	if left != 1 {
		t.Fatalf("%d refreshes kept, want 1", left)
	}
	// Malformed input starts nothing.
	r.Refresh(nil)
	r.Refresh([]byte("did:plc:short"))
	if n := r.refreshed.Get(); n != uint64(limit)+1 {
		t.Fatalf("bad input started a refresh: %d", n)
	}
}
