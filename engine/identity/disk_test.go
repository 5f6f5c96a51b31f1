package identity

import (
	"context"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/internal/storetest"
	"github.com/atrelay/relay/internal/testutil"
	"github.com/atrelay/relay/store"
)

// openStore opens the store "db" on fs with small test options.
func openStore(t testing.TB, fs vfs.FS) *store.Store {
	t.Helper()
	st, err := store.Open("db", store.Options{FS: fs, BlockCacheBytes: 8 << 20, MemTableBytes: 4 << 20, RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// newDiskResolver is newTestResolver with a store and the clock at clk.
func newDiskResolver(t testing.TB, p *fakePLC, st *store.Store, clk *testutil.Clock, cfg Config) *Resolver {
	t.Helper()
	cfg.PLCURL = p.srv.URL
	cfg.Now = clk.Now
	cfg.AllowInsecureHosts = true
	cfg.Store = st
	return New(cfg)
}

// requests returns how many requests the fake directory has answered.
func (p *fakePLC) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.requests {
		n += c
	}
	return n
}

// canceled is a context that is already done: Lookup with it answers only
// what needs no network round trip (the relay's workers call it so).
var canceled = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// TestDiskRestartNoPLC: identities resolved before a restart (resolver and
// store closed and reopened) are served after it, by Lookup, Cached and
// Prefetch, with no request to the directory and without waiting.
func TestDiskRestartNoPLC(t *testing.T) {
	p := newFakePLC(t)
	fs := vfs.NewMem()
	clk := testutil.NewClock(time.Unix(1_800_000_000, 0))
	st := openStore(t, fs)
	r := newDiskResolver(t, p, st, clk, Config{})
	const n = 300
	want := make([]Identity, n)
	for i := range n {
		id, err := r.Lookup(context.Background(), plcDID(uint64(i)))
		if err != nil {
			t.Fatal(err)
		}
		want[i] = id
	}
	r.Close()
	st.Close()
	before := p.total()

	clk.Advance(time.Hour)
	st = openStore(t, fs)
	defer st.Close()
	r = newDiskResolver(t, p, st, clk, Config{})
	defer r.Close()
	for i := range n {
		did := plcDID(uint64(i))
		var id Identity
		var err error
		switch i % 3 {
		case 0:
			id, err = r.Lookup(canceled, did) // a worker's lookup: must not wait
		case 1:
			var ok bool
			id, ok, err = r.Cached(did)
			if !ok {
				t.Fatalf("%s not served by Cached after the restart", did)
			}
		case 2:
			r.Prefetch([]byte(did))
			id, err = r.Lookup(context.Background(), did)
		}
		if err != nil || id != want[i] {
			t.Fatalf("%s after restart: %+v %v, want %+v", did, id, err, want[i])
		}
	}
	if got := p.total() - before; got != 0 {
		t.Fatalf("%d directory requests after the restart, want 0", got)
	}
	if h := r.disk.hits.Get(); h < n {
		t.Fatalf("%d disk hits for %d identities", h, n)
	}
}

// TestDiskCrashNeverWrong crashes (a power-loss clone of the filesystem,
// the resolver never closed, rows still pending in memory) after some
// identities were committed, more were resolved, one key was rotated
// through #identity and the event's batch was synced. After the restart
// every identity served from disk is the directory's current one (the
// rotated key never comes back), and those committed before the synced
// batch are served without a request.
func TestDiskCrashNeverWrong(t *testing.T) {
	for round := range 8 {
		p := newFakePLC(t)
		fs := vfs.NewCrashableMem()
		clk := testutil.NewClock(time.Unix(1_800_000_000, 0))
		st := openStore(t, fs)
		r := newDiskResolver(t, p, st, clk, Config{})
		ctx := context.Background()
		const committed, extra = 50, 50
		for i := range committed {
			if _, err := r.Lookup(ctx, plcDID(uint64(i))); err != nil {
				t.Fatal(err)
			}
		}
		r.disk.flush()
		for i := committed; i < committed+extra; i++ {
			if _, err := r.Lookup(ctx, plcDID(uint64(i))); err != nil {
				t.Fatal(err)
			}
		}
		// An #identity event rotates one committed account's key, and the
		// relay then persists the event (a synced Append).
		rotatedDID := plcDID(7)
		rotated := newKey(t)
		p.setKey(rotatedDID, rotated)
		r.Refresh([]byte(rotatedDID), 1)
		if id, err := r.Reresolve(ctx, rotatedDID, 1); err != nil || id.Key != rotated {
			t.Fatalf("Reresolve: %+v %v", id, err)
		}
		host, err := st.CreateHost(store.NewHost{Hostname: "pds.example.com", Status: store.HostActive})
		if err != nil {
			t.Fatal(err)
		}
		ev := store.Event{Kind: store.KindIdentity, DID: []byte(rotatedDID), Host: host.ID, Cursor: 1}
		if _, err := storetest.Append(st, []store.Event{ev}, rawFrame([]byte("identity"))); err != nil {
			t.Fatal(err)
		}
		if round%2 == 1 {
			r.disk.flush() // some rounds crash with everything committed
		}
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(uint64(round), 11))})
		r.Close()
		st.Close()

		st = openStore(t, clone)
		r = newDiskResolver(t, p, st, clk, Config{})
		for i := range committed + extra {
			did := plcDID(uint64(i))
			id, ok, err := r.Cached(did)
			if i < committed && i != 7 && !ok {
				t.Fatalf("round %d: %s, committed before the synced batch, is lost", round, did)
			}
			if !ok {
				continue
			}
			wantKey := p.key
			if did == rotatedDID {
				wantKey = rotated
			}
			if err != nil || id.Key != wantKey || id.PDSHost != "pds.example.com" {
				t.Fatalf("round %d: %s served %+v %v after the crash, want key %v", round, did, id, err, wantKey)
			}
		}
		r.Close()
		st.Close()
	}
}

// rawFrame logs every event with the same fixed frame.
func rawFrame(b []byte) func(int, store.Seq) []byte {
	return func(int, store.Seq) []byte { return b }
}

// TestDiskTTL: a row past TTL is served at once while the DID is
// re-resolved in the background, and the new resolution is written back;
// a row past DiskMaxAge is not served (the lookup waits for the
// directory) and the sweep deletes it.
func TestDiskTTL(t *testing.T) {
	p := newFakePLC(t)
	clk := testutil.NewClock(time.Unix(1_800_000_000, 0))
	st := openStore(t, vfs.NewMem())
	defer st.Close()
	cfg := Config{TTL: time.Hour, DiskMaxAge: 10 * time.Hour}
	r := newDiskResolver(t, p, st, clk, cfg)
	did, old := plcDID(1), plcDID(2)
	for _, d := range []string{did, old} {
		if _, err := r.Lookup(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	clk.Advance(2 * time.Hour)
	r = newDiskResolver(t, p, st, clk, cfg)
	defer r.Close()
	gate := make(chan struct{})
	p.setGate(gate) // the re-resolution cannot finish before Lookup returns
	if id, err := r.Lookup(canceled, did); err != nil || id.Key != p.key {
		t.Fatalf("stale row: %+v %v, want it served", id, err)
	}
	waitRequests(t, p, did, 2) // the background re-resolution
	p.setGate(nil)
	close(gate)
	var rec store.IdentityRecord
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.disk.flush()
		if ok, _ := st.GetIdentity([]byte(did), &rec); ok && rec.ResolvedAt == clk.Now().Unix() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the re-resolution was not written back: %+v", rec)
		}
		time.Sleep(time.Millisecond)
	}

	clk.Advance(9 * time.Hour) // old is 11 hours old, past DiskMaxAge
	var sw sweep
	r.disk.sweepStep(&sw, 100)
	if ok, _ := st.GetIdentity([]byte(old), &rec); ok {
		t.Fatal("the sweep kept a row past DiskMaxAge")
	}
	if ok, _ := st.GetIdentity([]byte(did), &rec); !ok {
		t.Fatal("the sweep deleted a row within DiskMaxAge")
	}
	if _, err := r.Lookup(context.Background(), old); err != nil || p.count(old) != 2 {
		t.Fatalf("after DiskMaxAge: %v, %d requests, want a new one", err, p.count(old))
	}
}

// TestDiskIdentityRefresh: a key rotation taken through Refresh and
// Reresolve replaces the stored row, so after a restart the new key is
// served; Purge deletes the row before it returns.
func TestDiskIdentityRefresh(t *testing.T) {
	p := newFakePLC(t)
	fs := vfs.NewMem()
	clk := testutil.NewClock(time.Unix(1_800_000_000, 0))
	st := openStore(t, fs)
	r := newDiskResolver(t, p, st, clk, Config{})
	ctx := context.Background()
	did, purged := plcDID(31), plcDID(32)
	for _, d := range []string{did, purged} {
		if _, err := r.Lookup(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	r.disk.flush()
	rotated := newKey(t)
	p.setKey(did, rotated)
	r.Refresh([]byte(did), 9)
	if id, err := r.Reresolve(ctx, did, 9); err != nil || id.Key != rotated {
		t.Fatalf("Reresolve: %+v %v", id, err)
	}
	r.Purge(purged)
	var rec store.IdentityRecord
	if ok, _ := st.GetIdentity([]byte(purged), &rec); ok {
		t.Fatal("Purge returned with the row still stored")
	}
	r.Close()
	st.Close()

	st = openStore(t, fs)
	defer st.Close()
	r = newDiskResolver(t, p, st, clk, Config{})
	defer r.Close()
	before := p.count(did)
	id, err := r.Lookup(ctx, did)
	if err != nil || id.Key != rotated || id.Handle != "new.example.com" {
		t.Fatalf("after restart: %+v %v, want the rotated key", id, err)
	}
	if p.count(did) != before {
		t.Fatal("the rotated identity was fetched again instead of read from disk")
	}
	if _, ok, _ := r.Cached(purged); ok {
		t.Fatal("a purged identity came back after the restart")
	}
}

// TestDiskHotSetWithinBudget: with the store behind it the memory tier
// still stays within MaxCacheBytes, evicting to disk, and what it evicted
// comes back from disk without a request.
func TestDiskHotSetWithinBudget(t *testing.T) {
	p := newFakePLC(t)
	clk := testutil.NewClock(time.Unix(1_800_000_000, 0))
	st := openStore(t, vfs.NewMem())
	defer st.Close()
	const budget = 64 << 10
	r := newDiskResolver(t, p, st, clk, Config{MaxCacheBytes: budget, Shards: 4})
	defer r.Close()
	const n = 3000
	for round := range 2 {
		for i := range n {
			if _, err := r.Lookup(context.Background(), plcDID(uint64(i))); err != nil {
				t.Fatal(err)
			}
			if b := r.Stats().Bytes; b > budget {
				t.Fatalf("round %d: hot set at %d bytes, budget %d", round, b, budget)
			}
		}
	}
	st2 := r.Stats()
	if st2.Evictions == 0 || st2.Entries >= n {
		t.Fatalf("no eviction: %+v", st2)
	}
	if got := p.total(); got != n {
		t.Fatalf("%d requests for %d DIDs looked up twice: evicted ones were fetched again", got, n)
	}
	t.Logf("%+v, %d disk hits", st2, r.disk.hits.Get())
}

// TestDiskMaxRows: the rows written stop at DiskMaxRows; identities past
// it are still resolved and cached in memory.
func TestDiskMaxRows(t *testing.T) {
	p := newFakePLC(t)
	clk := testutil.NewClock(time.Unix(1_800_000_000, 0))
	st := openStore(t, vfs.NewMem())
	defer st.Close()
	r := newDiskResolver(t, p, st, clk, Config{DiskMaxRows: 100})
	for i := range 300 {
		if _, err := r.Lookup(context.Background(), plcDID(uint64(i))); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			r.disk.flush()
		}
	}
	r.Close()
	rows := 0
	if _, err := st.ScanIdentities(nil, 1000, func([]byte, *store.IdentityRecord, error) { rows++ }); err != nil {
		t.Fatal(err)
	}
	if rows > 100 || rows < 50 {
		t.Fatalf("%d rows on disk, DiskMaxRows 100", rows)
	}
	if r.disk.dropped.Get() < 200 {
		t.Fatalf("%d rows dropped, want at least 200", r.disk.dropped.Get())
	}
}

// TestDiskPurgeRacesDiskRead runs a Purge (after a key rotation) in the
// two windows where a disk read could outlive it: between a Lookup's disk
// read and its caching the row, and between the Purge's memory step and
// its disk delete (where a Prefetch starts a flight). Neither may leave
// the purged key cached.
func TestDiskPurgeRacesDiskRead(t *testing.T) {
	p := newFakePLC(t)
	clk := testutil.NewClock(time.Unix(1_800_000_000, 0))
	st := openStore(t, vfs.NewMem())
	defer st.Close()
	r := newDiskResolver(t, p, st, clk, Config{})
	defer r.Close()
	ctx := context.Background()
	a, b := plcDID(41), plcDID(42)
	for _, d := range []string{a, b} {
		if _, err := r.Lookup(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	r.disk.flush()
	evict := func(did string) { // leave the row on disk only
		ref, _ := parseDID(did)
		r.cache.remove(&ref, did)
	}

	// Window 1: the Lookup has read a's row when the Purge runs.
	evict(a)
	p.setKey(a, newKey(t))
	testHookDiskRead = func(did string) {
		testHookDiskRead = nil
		r.Purge(did)
	}
	_, _ = r.Lookup(canceled, a) // may answer with the old row: it began before the Purge
	testHookDiskRead = nil
	if id, ok, _ := r.Cached(a); ok && id.Key == p.key {
		t.Fatal("window 1: the purged key is cached")
	}

	// Window 2: a Prefetch starts a flight while the Purge has cleared
	// memory but not yet the disk.
	evict(b)
	rotated := newKey(t)
	p.setKey(b, rotated)
	testHookForget = func(did string) {
		testHookForget = nil
		r.Prefetch([]byte(did))
		// Let the flight finish before the Purge deletes the row.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			r.mu.Lock()
			f := r.mu.flights[did]
			r.mu.Unlock()
			if f == nil {
				return
			}
		}
		t.Error("the prefetch never finished")
	}
	r.Purge(b)
	testHookForget = nil
	id, err := r.Lookup(ctx, b)
	if err != nil || id.Key != rotated {
		t.Fatalf("window 2: %+v %v, want the rotated key", id, err)
	}
}

// BenchmarkLookupDisk measures a Lookup answered from the store: the hot
// set holds a few hundred of the 20,000 identities, so nearly every
// lookup reads a row, validates its key and caches it (evicting another).
func BenchmarkLookupDisk(b *testing.B) {
	p := newFakePLC(b)
	clk := testutil.NewClock(time.Unix(1_800_000_000, 0))
	st := openStore(b, vfs.NewMem())
	defer st.Close()
	r := newDiskResolver(b, p, st, clk, Config{MaxCacheBytes: 64 << 10, Shards: 1})
	defer r.Close()
	const n = 20_000
	dids := make([]string, n)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				dids[i] = plcDID(uint64(i))
				if _, err := r.Lookup(context.Background(), dids[i]); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	r.disk.flush()
	before := r.disk.hits.Get()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, err := r.Lookup(context.Background(), dids[i%n]); err != nil {
			b.Fatal(err)
		}
		i += 7919 // a prime: every DID, in an order the hot set does not hold
	}
	b.ReportMetric(float64(r.disk.hits.Get()-before)/float64(b.N), "disk-hits/op")
}

// restartSample bounds the DIDs TestRestartTime resolves through the slow
// directory: beyond it the time without the tier is extrapolated from the
// measured rate (at the default pace of 1,000 requests/s, 1 M DIDs would
// take 17 minutes), and the rest of the rows are written through the
// store's batch API.
const restartSample = 20_000

// TestRestartTime is the measurement in the report, run by hand:
// RELAY_IDENTITY_RESTART_N DIDs resolved through a directory that answers
// after 80 ms (the first restartSample of them, at the resolver's default
// concurrency and pace; the rest are copies of a resolved row stored in
// batches), then served again after a restart: reopening the store and the
// resolver and looking every DID up, with no request to the directory.
func TestRestartTime(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("RELAY_IDENTITY_RESTART_N"))
	if n <= 0 {
		t.Skip("set RELAY_IDENTITY_RESTART_N to measure")
	}
	p := newFakePLC(t)
	inner := p.srv.Config.Handler
	p.srv.Config.Handler = httpDelay(80*time.Millisecond, inner)
	dir := t.TempDir()
	clk := testutil.NewClock(time.Unix(1_800_000_000, 0))
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lookupAll := func(r *Resolver, n int) time.Duration {
		began := time.Now()
		var wg sync.WaitGroup
		for w := range 256 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 256 {
					if _, err := r.Lookup(context.Background(), plcDID(uint64(i))); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(began)
	}
	sample := min(n, restartSample)
	r := newDiskResolver(t, p, st, clk, Config{})
	cold := lookupAll(r, sample)
	r.Close()
	if n > sample {
		fillIdentities(t, st, sample, n)
	}
	st.Close()
	before := p.total()
	began := time.Now()
	st, err = store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r = newDiskResolver(t, p, st, clk, Config{})
	defer r.Close()
	opened := time.Since(began)
	lookupAll(r, n)
	warm := time.Since(began)
	requests := p.total() - before
	r.Close()
	st.Close()
	if requests != 0 {
		t.Errorf("%d directory requests after the restart, want 0", requests)
	}
	// Bytes per row on disk: the identity range alone, compacted.
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lo, hi := []byte{0x0a}, []byte{0x0b}
	if err := db.Compact(context.Background(), lo, hi, true); err != nil {
		t.Fatal(err)
	}
	size, err := db.EstimateDiskUsage(lo, hi)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d DIDs from the directory (80 ms, %d in flight, %d/s): %v for %d, so %v for %d (extrapolated when %d > %d)",
		sample, DefaultPLCMaxInFlight, DefaultPLCMaxRate, cold.Round(time.Millisecond), sample,
		(cold * time.Duration(n) / time.Duration(sample)).Round(time.Second), n, n, sample)
	t.Logf("after a restart: store and resolver open in %v, all %d served from disk in %v (%d requests); %.1f bytes per row on disk",
		opened.Round(time.Millisecond), n, warm.Round(time.Millisecond), requests, float64(size)/float64(n))
}

// fillIdentities stores rows for DIDs from..to-1 through the store's batch
// API, each a copy of DID 0's resolved row with its own handle and its own
// key (so the rows compress on disk no better than real ones), as if they
// had been resolved before the restart.
func fillIdentities(t *testing.T, st *store.Store, from, to int) {
	t.Helper()
	var rec store.IdentityRecord
	if ok, err := st.GetIdentity([]byte(plcDID(0)), &rec); !ok || err != nil {
		t.Fatalf("row of a resolved DID: %v %v", ok, err)
	}
	b := st.NewIdentityBatch()
	defer b.Close()
	for i := from; i < to; i++ {
		did := plcDID(uint64(i))
		rec.Handle = append(rec.Handle[:0], did[8:]...)
		rec.Handle = append(rec.Handle, ".example.com"...)
		k, err := atcrypto.GeneratePrivateKey(atcrypto.K256)
		if err != nil {
			t.Fatal(err)
		}
		rec.KeyType, rec.Key = store.KeyK256, k.Public().Compressed()
		if err := b.Set([]byte(did), &rec); err != nil {
			t.Fatal(err)
		}
		if b.Len() == 10_000 {
			if err := b.Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
}

// httpDelay answers every request after d.
func httpDelay(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(d)
		h.ServeHTTP(w, r)
	})
}
