package identity

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/atrelay/relay/engine/atcrypto"
)

func testKey(t testing.TB) atcrypto.PublicKey {
	t.Helper()
	k, err := atcrypto.GeneratePrivateKey(atcrypto.K256)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// fill puts n synthetic did:plc entries (with 20-byte handles) into c.
func fill(t testing.TB, c *cache, from, n int, key atcrypto.PublicKey, now uint32) {
	t.Helper()
	host, _ := c.hosts.intern("pds.example.com")
	for i := from; i < from+n; i++ {
		did := plcDID(uint64(i))
		ref, err := parseDID(did)
		if err != nil {
			t.Fatal(err)
		}
		handle := fmt.Sprintf("user%08d.bsky.app", i)
		c.put(&ref, did, entry{key: key, hostID: host, expires: now + 3600}, handle, now)
	}
}

// TestByteBudgetEviction fills a small cache far past its budget: accounted
// bytes stay within it, evictions happen, and survivors still read back.
func TestByteBudgetEviction(t *testing.T) {
	const budget = 256 << 10
	c := newCache(8, budget, 10)
	key := testKey(t)
	fill(t, c, 0, 20_000, key, 10)
	if b := c.bytes.Load(); b > budget {
		t.Fatalf("accounted %d bytes, budget %d", b, budget)
	}
	if c.evictions.Load() == 0 {
		t.Fatal("no evictions")
	}
	entries := c.entries.Load()
	if min := int64(budget / (plcEntryBytes + 40) / 2); entries < min {
		t.Fatalf("only %d entries kept, want at least %d", entries, min)
	}
	// Every surviving entry reads back with its own handle.
	found := 0
	for i := range 20_000 {
		did := plcDID(uint64(i))
		ref, _ := parseDID(did)
		e, handle, ok := c.get(&ref, did, 10)
		if !ok {
			continue
		}
		found++
		if want := fmt.Sprintf("user%08d.bsky.app", i); handle != want || e.key != key {
			t.Fatalf("%s: handle %q, want %q", did, handle, want)
		}
	}
	if int64(found) != entries {
		t.Fatalf("found %d entries, counter says %d", found, entries)
	}
}

// TestEvictionPrefersCold: entries touched recently survive a wave of new
// inserts better than untouched ones.
func TestEvictionPrefersCold(t *testing.T) {
	// Room for the first 300 entries and their handles, not for more.
	const budget = 300 * (plcEntryBytes + 21)
	c := newCache(1, budget, 10)
	key := testKey(t)
	fill(t, c, 0, 300, key, 0)
	// Touch the first 100 at t=1000.
	for i := range 100 {
		did := plcDID(uint64(i))
		ref, _ := parseDID(did)
		c.get(&ref, did, 1000)
	}
	fill(t, c, 10_000, 150, key, 1000)
	hot, cold := 0, 0
	for i := range 300 {
		did := plcDID(uint64(i))
		ref, _ := parseDID(did)
		if _, _, ok := c.get(&ref, did, 1000); ok {
			if i < 100 {
				hot++
			} else {
				cold++
			}
		}
	}
	if hot*2 <= cold {
		t.Fatalf("hot survivors %d/100, cold %d/200: eviction ignores recency", hot, cold)
	}
}

// TestHandleArenaCompaction replaces entries many times: the arena is
// compacted, accounting returns to the live size, and handles stay right.
func TestHandleArenaCompaction(t *testing.T) {
	c := newCache(1, 1<<30, 10)
	key := testKey(t)
	fill(t, c, 0, 200, key, 0)
	// Keep a handle string from before the compactions.
	ref0, _ := parseDID(plcDID(0))
	_, old, _ := c.get(&ref0, plcDID(0), 0)
	for range 20 {
		fill(t, c, 0, 200, key, 0)
	}
	s := &c.shards[0]
	if s.dead > len(s.handles)/2+4096 {
		t.Fatalf("arena %d bytes, %d dead: not compacted", len(s.handles), s.dead)
	}
	if want := int64(200*plcEntryBytes) + int64(len(s.handles)); c.bytes.Load() != want {
		t.Fatalf("accounted %d, want %d", c.bytes.Load(), want)
	}
	if old != "user00000000.bsky.app" {
		t.Fatalf("handed-out handle changed to %q", old)
	}
}

// TestBytesPerEntry measures the real heap cost of cached identities with
// runtime.MemStats and checks the budget accounting is close to it.
func TestBytesPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates ~30 MB")
	}
	const n = 200_000
	key := testKey(t)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newCache(256, 1<<40, 10)
	fill(t, c, 0, n, key, 0)
	runtime.GC()
	runtime.ReadMemStats(&after)
	real := float64(after.HeapAlloc-before.HeapAlloc) / n
	accounted := float64(c.bytes.Load()) / n
	t.Logf("did:plc entry with a 21-byte handle: %.1f bytes measured, %.1f accounted", real, accounted)
	if ratio := real / accounted; ratio < 0.6 || ratio > 1.6 {
		t.Fatalf("accounting off: measured %.1f B/entry, accounted %.1f", real, accounted)
	}
	runtime.KeepAlive(c)
}

// BenchmarkLookupHit is the hot path: a cached did:plc.
func BenchmarkLookupHit(b *testing.B) {
	p := newFakePLC(b)
	r := New(Config{PLCURL: p.srv.URL})
	defer r.Close()
	did := plcDID(1)
	if _, err := r.Lookup(context.Background(), did); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Lookup(context.Background(), did); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupHitParallel: cached lookups from every core.
func BenchmarkLookupHitParallel(b *testing.B) {
	r := New(Config{})
	defer r.Close()
	key := testKey(b)
	fill(b, r.cache, 0, 10_000, key, 0)
	dids := make([]string, 10_000)
	for i := range dids {
		dids[i] = plcDID(uint64(i))
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := r.Lookup(context.Background(), dids[i%len(dids)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
