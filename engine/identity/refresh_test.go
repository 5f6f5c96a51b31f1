package identity

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
)

// newKey returns a fresh secp256k1 public key.
func newKey(t *testing.T) atcrypto.PublicKey {
	t.Helper()
	k, err := atcrypto.GeneratePrivateKey(atcrypto.K256)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// setKey makes the directory serve did with key (and a new handle).
func (p *fakePLC) setKey(did string, key atcrypto.PublicKey) {
	p.mu.Lock()
	p.body[did] = docFor(did, key, "https://pds.example.com", "at://new.example.com")
	p.mu.Unlock()
}

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
	rotated := newKey(t)
	p.setKey(did, rotated)

	r.Refresh([]byte(did), 1)
	waitRequests(t, p, did, 2)
	if id, err := r.Lookup(ctx, did); err != nil || id.Key != old.Key {
		t.Fatalf("Lookup during refresh: %+v %v, want the old key", id, err)
	}
	id, err := r.Reresolve(ctx, did, 1)
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
	// Two events queued for one account each take the refresh started
	// when they arrived.
	older := newKey(t)
	p.setKey(did, older)
	r.Refresh([]byte(did), 10)
	waitRequests(t, p, did, 3)
	p.setKey(did, rotated)
	r.Refresh([]byte(did), 11)
	waitRequests(t, p, did, 4)
	if id, err := r.Reresolve(ctx, did, 10); err != nil || id.Key != older {
		t.Fatalf("first of two queued events: %+v %v", id, err)
	}
	if id, err := r.Reresolve(ctx, did, 11); err != nil || id.Key != rotated {
		t.Fatalf("second of two queued events: %+v %v", id, err)
	}
	if p.count(did) != 4 {
		t.Fatalf("%d requests, want 4", p.count(did))
	}
	// Each event takes its own refresh: one left over (its #identity was
	// dropped before processing, tag 2) is never served for a later event
	// (tag 3), and a refresh under the same tag is replaced by the newer.
	r.Refresh([]byte(did), 2)
	waitRequests(t, p, did, 5)
	k2 := newKey(t)
	p.setKey(did, k2)
	r.Refresh([]byte(did), 3)
	waitRequests(t, p, did, 6)
	if id, err := r.Reresolve(ctx, did, 3); err != nil || id.Key != k2 {
		t.Fatalf("Reresolve of a later event: %+v %v, want its own (newest) key", id, err)
	}
	r.Refresh([]byte(did), 5)
	waitRequests(t, p, did, 7)
	r.Refresh([]byte(did), 5)
	waitRequests(t, p, did, 8)
	if id, err := r.Reresolve(ctx, did, 5); err != nil || id.Key != k2 {
		t.Fatalf("Reresolve of a replaced refresh: %+v %v", id, err)
	}
	// Without a pending refresh Reresolve is Purge then Lookup.
	if _, err := r.Reresolve(ctx, did, 4); err != nil || p.count(did) != 9 {
		t.Fatalf("Reresolve without refresh: %v, %d requests, want 9", err, p.count(did))
	}
	if r.refreshUsed.Get() != 5 {
		t.Fatalf("refreshes used %d, want 5", r.refreshUsed.Get())
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
	r.Refresh([]byte(did), 1)
	waitRequests(t, p, did, 1)
	type res struct {
		id  Identity
		err error
	}
	got := make(chan res, 2)
	go func() {
		id, err := r.Reresolve(ctx, did, 1)
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

// TestRefreshBounded: running refreshes are bounded like Prefetch's
// flights; held ones (finished, waiting for their event) by maxRefreshes,
// and finished ones nobody took are dropped once older than refreshMaxAge
// and room is needed.
func TestRefreshBounded(t *testing.T) {
	p := newFakePLC(t)
	gate := make(chan struct{})
	p.setGate(gate)
	r, clk := newTestResolver(t, p, Config{PLCMaxInFlight: 1})
	r.maxRefreshes = 3 * maxPrefetchFlights
	running := maxPrefetchFlights * 1
	for i := range uint64(running + 5) {
		r.Refresh([]byte(plcDID(100+i)), 0)
	}
	if n := r.refreshed.Get(); n != uint64(running) {
		t.Fatalf("%d refreshes started against a stalled directory, want %d", n, running)
	}
	close(gate)
	r.wg.Wait() // every refresh finished; none taken
	for i := range uint64(2 * running) {
		r.Refresh([]byte(plcDID(200+i)), 0)
		r.wg.Wait()
	}
	if n := r.refreshed.Get(); n != uint64(r.maxRefreshes) {
		t.Fatalf("%d refreshes held, want the table's %d", n, r.maxRefreshes)
	}
	r.Refresh([]byte(plcDID(500)), 0)
	if n := r.refreshed.Get(); n != uint64(r.maxRefreshes) {
		t.Fatalf("full table of young refreshes took another: %d", n)
	}
	clk.Advance((refreshMaxAge + 1) * time.Second)
	r.Refresh([]byte(plcDID(500)), 0)
	if n := r.refreshed.Get(); n != uint64(r.maxRefreshes)+1 {
		t.Fatalf("stale refreshes not dropped: %d started", n)
	}
	r.mu.Lock()
	left := len(r.mu.refreshes)
	r.mu.Unlock()
	if left != 1 {
		t.Fatalf("%d refreshes kept, want 1", left)
	}
	// Malformed input starts nothing.
	r.Refresh(nil, 0)
	r.Refresh([]byte("did:plc:short"), 0)
	if n := r.refreshed.Get(); n != uint64(r.maxRefreshes)+1 {
		t.Fatalf("bad input started a refresh: %d", n)
	}
}

// gatedResolver is a resolver with one PLC request slot, held by a Lookup
// of other at the fake directory's gate (the caller closes gate), and the
// directory serving did with a fresh key, rotated.
func gatedResolver(t *testing.T, did, other string) (r *Resolver, p *fakePLC, gate chan struct{}, rotated atcrypto.PublicKey) {
	t.Helper()
	p = newFakePLC(t)
	r, _ = newTestResolver(t, p, Config{PLCMaxInFlight: 1})
	rotated = newKey(t)
	p.setKey(did, rotated)
	gate = make(chan struct{})
	p.setGate(gate)
	go func() { _, _ = r.Lookup(context.Background(), other) }()
	waitRequests(t, p, other, 1)
	return r, p, gate, rotated
}

// TestRefreshSharedUntilSent: #identity events of one DID that arrive while
// its refresh waits for a request slot share that refresh: one request,
// and each event's Reresolve gets its document. An event arriving once the
// request has left gets a refresh of its own.
func TestRefreshSharedUntilSent(t *testing.T) {
	did := plcDID(41)
	r, p, gate, rotated := gatedResolver(t, did, plcDID(42))
	ctx := context.Background()
	for tag := uint64(1); tag <= 3; tag++ {
		r.Refresh([]byte(did), tag)
	}
	if got := r.refreshShared.Get(); got != 2 {
		t.Fatalf("%d refreshes shared, want 2", got)
	}
	close(gate)
	p.setGate(nil)
	for tag := uint64(1); tag <= 3; tag++ {
		if id, err := r.Reresolve(ctx, did, tag); err != nil || id.Key != rotated {
			t.Fatalf("Reresolve %d: %+v %v", tag, id, err)
		}
	}
	if n := p.count(did); n != 1 {
		t.Fatalf("%d requests for three events, want 1", n)
	}
	// Sent: a new event gets a new request.
	r.Refresh([]byte(did), 4)
	waitRequests(t, p, did, 2)
	r.Refresh([]byte(did), 5)
	waitRequests(t, p, did, 3)
	for tag := uint64(4); tag <= 5; tag++ {
		if _, err := r.Reresolve(ctx, did, tag); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.refreshShared.Get(); got != 2 {
		t.Fatalf("%d refreshes shared, want still 2", got)
	}
}

// TestReresolveAdoptsFinishedSharedRefresh: a refresh shared by two
// #identity events is attached by the first event's Reresolve, a Lookup
// joins it, and it finishes; the second event's Reresolve then adopts the
// finished flight while the Lookup may still be reading its result. Under
// -race this fails if adopting writes into the flight its waiters read
// without the lock (it wrote the interned PDS host into the flight's id).
func TestReresolveAdoptsFinishedSharedRefresh(t *testing.T) {
	did := plcDID(51)
	r, p, gate, rotated := gatedResolver(t, did, plcDID(52))
	ctx := context.Background()
	r.Refresh([]byte(did), 1)
	r.Refresh([]byte(did), 2) // shares the first, unsent
	first := make(chan Identity, 1)
	go func() { id, _ := r.Reresolve(ctx, did, 1); first <- id }()
	attached := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.mu.flights[did] != nil
	}
	for !attached() {
		runtime.Gosched()
	}
	joined := r.coalesced.Get()
	looked := make(chan Identity, 1)
	go func() { id, _ := r.Lookup(ctx, did); looked <- id }()
	for r.coalesced.Get() == joined {
		runtime.Gosched()
	}
	close(gate)
	p.setGate(nil)
	finished := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		rf, ok := r.mu.refreshes[refreshKey{did, 2}]
		return ok && rf.f.finished
	}
	for !finished() {
		runtime.Gosched()
	}
	second, err := r.Reresolve(ctx, did, 2)
	if err != nil || second.Key != rotated {
		t.Fatalf("second Reresolve: %+v %v", second, err)
	}
	if id := <-first; id.Key != rotated {
		t.Fatalf("first Reresolve: %+v", id)
	}
	if id := <-looked; id.Key != rotated || id.PDSHost != second.PDSHost {
		t.Fatalf("Lookup joined to the refresh: %+v", id)
	}
	if n := p.count(did); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}
