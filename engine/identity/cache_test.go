package identity

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
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
	host := c.internHost("pds.example.com")
	for i := from; i < from+n; i++ {
		did := plcDID(uint64(i))
		ref, err := parseDID(did)
		if err != nil {
			t.Fatal(err)
		}
		handle := fmt.Sprintf("user%08d.bsky.app", i)
		c.put(&ref, did, entry{key: key, host: host, expires: now + 3600}, handle, now)
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
	if min := int64(budget / (recBytes + 40) / 2); entries < min {
		t.Fatalf("only %d entries kept, want at least %d", entries, min)
	}
	// Every surviving entry reads back with its own handle.
	found := 0
	for i := range 20_000 {
		did := plcDID(uint64(i))
		ref, _ := parseDID(did)
		e, handle, _, ok := c.get(&ref, did, 10)
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
	c := newCache(1, 1<<30, 10)
	key := testKey(t)
	fill(t, c, 0, 300, key, 0)
	c.shardBudget = c.shards[0].bytes
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
		if _, _, _, ok := c.get(&ref, did, 1000); ok {
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
	_, old, _, _ := c.get(&ref0, plcDID(0), 0)
	for range 20 {
		fill(t, c, 0, 200, key, 0)
	}
	s := &c.shards[0]
	if s.dead > len(s.arena)/2+4096 {
		t.Fatalf("arena %d bytes, %d dead: not compacted", len(s.arena), s.dead)
	}
	if live := 1 + 200*(1+len("user00000000.bsky.app")); len(s.arena) != live+s.dead {
		t.Fatalf("arena %d bytes, %d dead, %d live", len(s.arena), s.dead, live)
	}
	if want := int64(4*len(s.index)) + int64(len(s.chunks)*(recBytes*chunkRecs+8)) + int64(cap(s.arena)); c.bytes.Load() != want {
		t.Fatalf("accounted %d, want %d", c.bytes.Load(), want)
	}
	if old != "user00000000.bsky.app" {
		t.Fatalf("handed-out handle changed to %q", old)
	}
}

// TestBytesPerEntry measures the real heap cost of cached identities with
// runtime.MemStats, checks the budget accounting is close to it, and that
// an entry costs at most maxFixedBytes beyond its handle: the 64-byte
// record (of which 57 bytes are the DID, key, host ref and expiry it must
// hold) plus its share of the index, the last chunk and arena slack.
// RELAY_BYTES_PER_ENTRY_N measures at another scale.
func TestBytesPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates ~30 MB")
	}
	const maxFixedBytes = 64 + 20
	n := 200_000
	if v, err := strconv.Atoi(os.Getenv("RELAY_BYTES_PER_ENTRY_N")); err == nil && v > 0 {
		n = v
	}
	key := testKey(t)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newCache(256, 1<<40, 10)
	fill(t, c, 0, n, key, 0)
	runtime.GC()
	runtime.ReadMemStats(&after)
	real := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
	accounted := float64(c.bytes.Load()) / float64(n)
	handle := float64(1 + len("user00000000.bsky.app")) // length byte and bytes
	t.Logf("%d did:plc entries with a 21-byte handle: %.1f bytes measured (%.1f beyond the handle), %.1f accounted",
		n, real, real-handle, accounted)
	if ratio := real / accounted; ratio < 0.9 || ratio > 1.1 {
		t.Fatalf("accounting off: measured %.1f B/entry, accounted %.1f", real, accounted)
	}
	if real-handle > maxFixedBytes {
		t.Fatalf("an entry costs %.1f bytes beyond its handle, want at most %d", real-handle, maxFixedBytes)
	}
	runtime.KeepAlive(c)
}

// TestRecordLayout pins the record at 64 bytes without padding.
func TestRecordLayout(t *testing.T) {
	if got := unsafe.Sizeof(rec{}); got != recBytes {
		t.Fatalf("rec is %d bytes, want %d", got, recBytes)
	}
}

// BenchmarkLookupHit is the hot path: a cached did:plc.
func BenchmarkLookupHit(b *testing.B) {
	p := newFakePLC(b)
	r := New(Config{PLCURL: p.srv.URL, AllowInsecureHosts: true})
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

// TestHostTableRotates: hostile documents naming ever new PDS hosts keep
// the host table within MaxHosts names; an entry whose host was dropped is
// a miss (resolved again), and a host in use survives by moving to the
// current generation on each hit.
func TestHostTableRotates(t *testing.T) {
	const maxHosts = 10
	c := newCache(1, 1<<30, maxHosts)
	key := testKey(t)
	put := func(n uint64, host string) {
		id := c.internHost(host)
		did := plcDID(n)
		ref, _ := parseDID(did)
		c.put(&ref, did, entry{key: key, host: id, expires: 3600}, "", 0)
	}
	get := func(n uint64) (string, bool) {
		did := plcDID(n)
		ref, _ := parseDID(did)
		_, _, host, ok := c.get(&ref, did, 0)
		return host, ok
	}
	put(1, "cold.example.com")
	put(2, "hot.example.com")
	for i := range 1000 {
		c.hosts.intern(fmt.Sprintf("pds%d.attacker.example", i))
		if n, _ := c.hosts.stats(); n > maxHosts {
			t.Fatalf("host table holds %d names, max %d", n, maxHosts)
		}
		if i%3 == 0 {
			if host, ok := get(2); !ok || host != "hot.example.com" {
				t.Fatalf("after %d new hosts the hot entry reads %q, %v", i, host, ok)
			}
		}
	}
	if r := c.hosts.rotations.Load(); r < 1000/(maxHosts/2)-1 {
		t.Fatalf("%d rotations for 1000 names in generations of %d", r, maxHosts/2)
	}
	if host, ok := get(1); ok {
		t.Fatalf("entry on a dropped host still answers %q", host)
	}
	if n := c.entries.Load(); n != 1 {
		t.Fatalf("%d entries left, want the hot one", n)
	}
}

// TestHostRefsExhausted: when the host refs run out the cache starts
// over instead of reusing a ref an entry may still hold, so no lookup
// ever returns another DID's host; and an entry dropped by a lookup
// because its host is gone gives its bytes back.
func TestHostRefsExhausted(t *testing.T) {
	totals := func(c *cache) {
		t.Helper()
		var sum, n int64
		for k := range c.shards {
			sum += c.shards[k].bytes
			n += int64(c.shards[k].n)
		}
		if sum != c.bytes.Load() || n != c.entries.Load() {
			t.Fatalf("totals %d bytes %d entries, shards hold %d and %d", c.bytes.Load(), c.entries.Load(), sum, n)
		}
	}
	put := func(c *cache, i int, host string) {
		did := plcDID(uint64(i))
		ref, _ := parseDID(did)
		c.put(&ref, did, entry{key: testKey(t), host: c.internHost(host), expires: 3600}, "", 0)
	}
	get := func(c *cache, i int) (string, bool) {
		did := plcDID(uint64(i))
		ref, _ := parseDID(did)
		_, _, host, ok := c.get(&ref, did, 0)
		return host, ok
	}

	c := newCache(2, 1<<30, 1000)
	c.hosts.maxRef = 12
	for i := range 40 {
		put(c, i, fmt.Sprintf("h%d.example", i))
	}
	kept := 0
	for i := range 40 {
		if host, ok := get(c, i); ok {
			kept++
			if host != fmt.Sprintf("h%d.example", i) {
				t.Fatalf("%s reads host %q", plcDID(uint64(i)), host)
			}
		}
	}
	if kept == 0 || kept >= 40 {
		t.Fatalf("%d of 40 entries kept: the cache never started over, or kept nothing", kept)
	}
	totals(c)

	// One shard, generations of one name: the entry's host is dropped
	// after two more names, and the lookup that finds out frees it all.
	c = newCache(1, 1<<30, 2)
	put(c, 0, "a.example")
	c.internHost("b.example")
	c.internHost("c.example")
	if _, ok := get(c, 0); ok {
		t.Fatal("an entry whose host was dropped still answers")
	}
	totals(c)
	if c.bytes.Load() != 0 {
		t.Fatalf("an empty cache accounts %d bytes", c.bytes.Load())
	}
}

// TestHostTableByteBudget: long host names rotate the table by bytes
// before it reaches MaxHosts, within its share of MaxCacheBytes.
func TestHostTableByteBudget(t *testing.T) {
	const budget = 64 << 10
	c := newCache(1, budget, 1_000_000)
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60)
	for i := range 10_000 {
		c.hosts.intern(fmt.Sprintf("%d.%s", i, long))
		if _, b := c.hosts.stats(); b > budget/hostBudgetShare {
			t.Fatalf("host table at %d bytes, share %d", b, budget/hostBudgetShare)
		}
	}
	if c.hosts.rotations.Load() == 0 {
		t.Fatal("no rotation")
	}
}

// TestResolverWithinBudget resolves DIDs from a directory whose documents
// each name a new, long PDS host and handle: the whole cache, host table
// included, stays within MaxCacheBytes, evicting as it goes.
func TestResolverWithinBudget(t *testing.T) {
	p := newFakePLC(t)
	const budget = 96 << 10
	r, _ := newTestResolver(t, p, Config{MaxCacheBytes: budget, Shards: 4, MaxHosts: 1000})
	pad := strings.Repeat("x", 60)
	for i := range uint64(1500) {
		did := plcDID(20_000 + i)
		p.mu.Lock()
		p.body[did] = docFor(did, p.key, fmt.Sprintf("https://pds%d.%s.example.com", i, pad), fmt.Sprintf("at://user%d.%s.example.com", i, pad))
		p.mu.Unlock()
		if _, err := r.Lookup(context.Background(), did); err != nil {
			t.Fatal(err)
		}
		if st := r.Stats(); st.Bytes > budget {
			t.Fatalf("after %d lookups the cache holds %d bytes, budget %d", i+1, st.Bytes, budget)
		}
	}
	st := r.Stats()
	if st.Evictions == 0 || st.HostRotations == 0 {
		t.Fatalf("no eviction under pressure: %+v", st)
	}
	t.Logf("%+v", st)
}
