package identity

import (
	"encoding/binary"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
)

// touchEvery is how stale (in seconds) an entry's last-use time may get
// before a hit rewrites it; it is also the unit of rec.touched.
const touchEvery = 60

// evictSample is how many entries eviction compares (random-sample LRU, as
// in Redis): enough to usually pick an expired or cold entry, cheap enough
// to do on every insert at budget.
const evictSample = 5

// chunkRecs is how many records one allocation holds (4 KiB): records
// grow a chunk at a time, so a shard wastes at most one chunk instead of
// the quarter of a slice that append's growth leaves unused.
const chunkRecs = 64

// recBytes is the size of rec; TestRecordLayout checks it.
const recBytes = 64

// maxShardRecs bounds the records of one shard: an index slot keeps a
// record number in 24 bits.
const maxShardRecs = 1<<24 - 1

// Index slot layout: the record number plus one in the low 24 bits (so 0
// is an empty slot) and 8 bits of the DID's hash, which rule out most
// mismatching records without reading them.
const (
	slotRecMask  = 1<<24 - 1
	slotTagShift = 24
)

// flagWeb marks a record keyed by a did:web string (kept in the arena)
// rather than a decoded did:plc; the low bits of rec.flags hold the Reason.
const (
	flagWeb    = 0x80
	reasonMask = 0x0f
)

// Every Reason fits in the record's reasonMask bits.
var _ [reasonMask + 1 - numReasons]struct{}

// rec is one cached DID: 64 pointer-free bytes, fields ordered so that
// there is no padding. Times are cache clock values (seconds since the
// resolver started; touched in touchEvery units, wrapping, compared only
// to rank entries for eviction).
type rec struct {
	host    uint32             // host table ref; 0 in negative entries
	handle  uint32             // arena offset of the handle (length byte, then bytes); 0: none
	expires uint32             // stale at or after this second
	touched uint16             // last hit, in touchEvery units
	id      [15]byte           // did:plc: the decoded identifier; did:web: arena offset (u32) and length (u16) of the DID
	flags   uint8              // Reason (reasonMask) | flagWeb
	key     atcrypto.PublicKey // 34 bytes: curve and compressed point
}

// entry is what get returns and put takes: a rec without its key, handle
// and bookkeeping.
type entry struct {
	host    uint32 // host table ref; 0 in negative entries
	expires uint32 // cache clock second the entry goes stale
	key     atcrypto.PublicKey
	reason  Reason // ReasonNone: positive entry; otherwise a cached failure
}

// shard is one lock's worth of the cache: an open-addressing index
// (linear probing, at most 4/5 full, grown by a quarter at a time so it
// is never much emptier) over a dense array of records, and an arena of
// handle and did:web bytes.
type shard struct {
	mu   sync.Mutex
	seed maphash.Seed // static: the cache's

	// All fields below are guarded by mu.
	index  []uint32          // slots (see slotRecMask); a DID's probe starts at home(hash)
	chunks []*[chunkRecs]rec // records 0…n-1, dense: a delete moves the last one into the hole
	n      int               // records in use
	// arena holds handles (a length byte, then the bytes) and did:web
	// keys. Byte 0 is unused so that offset 0 means "no handle". Bytes
	// below len(arena) are never rewritten, so strings handed out by get
	// may point into it without copying; compaction allocates a new arena.
	arena []byte
	dead  int   // arena bytes no record refers to any more
	bytes int64 // accounted size: index, chunks, chunk pointers and arena capacity
}

// cache is a sharded, byte-budgeted map from DID to entry. Safe for
// concurrent use.
type cache struct {
	// Static after newCache.
	shards      []shard
	mask        uint64
	shardBudget int64
	seed        maphash.Seed
	hosts       hostTable

	// Totals across shards, for gauges; updated under the shard lock.
	entries   atomic.Int64
	bytes     atomic.Int64
	evictions atomic.Uint64
}

// hostBudgetShare is the part of the byte budget (1/16) reserved for the
// host table; the shards share the rest. 32 MiB of the default 512 MiB
// holds about 300,000 typical host names, far more than MaxHosts.
const hostBudgetShare = 16

// newCache returns a cache whose entries and host table together stay
// within budget bytes, with at most maxHosts host names.
func newCache(nShards int, budget int64, maxHosts int) *cache {
	hostBudget := budget / hostBudgetShare
	c := &cache{
		shards:      make([]shard, nShards),
		mask:        uint64(nShards - 1),
		shardBudget: (budget - hostBudget) / int64(nShards),
		seed:        maphash.MakeSeed(),
		hosts:       newHostTable(maxHosts, hostBudget),
	}
	for i := range c.shards {
		c.shards[i].seed = c.seed
	}
	return c
}

// hash returns did's 64-bit hash: the low bits pick the shard, bits 24-31
// are the slot tag, the high 32 bits the home slot (shard.home). did:plc identifiers
// are hashed too (not used as they are): anyone can grind PLC genesis
// operations, and a seeded hash keeps them from aiming at one probe chain.
func (c *cache) hash(ref *didRef, did string) uint64 {
	if ref.isPLC {
		return maphash.Bytes(c.seed, ref.plc[:])
	}
	return maphash.String(c.seed, did)
}

// get returns the entry for did, its handle and, for a positive entry,
// its PDS host. ok is false when there is no entry, it has expired, or its
// host has left the host table (the entry is then dropped, so the DID is
// resolved again). The handle aliases the shard arena, which is never
// overwritten, so it stays valid indefinitely; so does the host.
func (c *cache) get(ref *didRef, did string, now uint32) (e entry, handle, host string, ok bool) {
	h := c.hash(ref, did)
	s := &c.shards[h&c.mask]
	s.mu.Lock()
	slot, ri := s.find(h, ref, did)
	if ri < 0 {
		s.mu.Unlock()
		return entry{}, "", "", false
	}
	r := s.rec(ri)
	if now >= r.expires {
		s.mu.Unlock()
		return entry{}, "", "", false
	}
	reason := Reason(r.flags & reasonMask)
	if reason == ReasonNone {
		var current bool
		host, current, ok = c.hosts.name(r.host)
		if ok && !current {
			// A host in use moves to the current generation, so only
			// hosts nobody asked for during a whole generation go.
			r.host, ok = c.hosts.intern(host) // refs used up: a miss (put resets)
		}
		if !ok {
			before := s.bytes
			c.removeLocked(s, slot, ri)
			c.bytes.Add(s.bytes - before)
			s.mu.Unlock()
			return entry{}, "", "", false
		}
	}
	r.touched = uint16(now / touchEvery)
	if r.handle != 0 {
		handle = s.str(r.handle+1, int(s.arena[r.handle]))
	}
	e = entry{host: r.host, expires: r.expires, key: r.key, reason: reason}
	s.mu.Unlock()
	return e, handle, host, true
}

// put stores e (with handle copied into the arena) for did, replacing any
// previous entry, then evicts until the shard is within its budget.
func (c *cache) put(ref *didRef, did string, e entry, handle string, now uint32) {
	h := c.hash(ref, did)
	s := &c.shards[h&c.mask]
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.bytes
	if slot, ri := s.find(h, ref, did); ri >= 0 {
		c.removeLocked(s, slot, ri)
	}
	for s.n >= maxShardRecs {
		c.evictOneLocked(s, now)
	}
	r := rec{host: e.host, expires: e.expires, touched: uint16(now / touchEvery), key: e.key, flags: uint8(e.reason)}
	if ref.isPLC {
		r.id = ref.plc
	} else {
		r.flags |= flagWeb
		off := s.appendArena(did)
		binary.LittleEndian.PutUint32(r.id[0:4], off)
		binary.LittleEndian.PutUint16(r.id[4:6], uint16(len(did)))
	}
	if len(handle) > 0 && len(handle) <= 255 {
		r.handle = s.appendArena(handle) - 1
		s.arena[r.handle] = byte(len(handle))
	}
	s.insert(h, r)
	s.account()
	c.entries.Add(1)
	for s.bytes > c.shardBudget && s.n > 1 {
		c.evictOneLocked(s, now)
	}
	c.compactLocked(s)
	c.bytes.Add(s.bytes - before)
}

// remove deletes did's entry if present (Purge).
func (c *cache) remove(ref *didRef, did string) {
	h := c.hash(ref, did)
	s := &c.shards[h&c.mask]
	s.mu.Lock()
	before := s.bytes
	if slot, ri := s.find(h, ref, did); ri >= 0 {
		c.removeLocked(s, slot, ri)
		c.compactLocked(s)
	}
	c.bytes.Add(s.bytes - before)
	s.mu.Unlock()
}

// internHost returns the host table ref of name. When the table has used
// up its refs (after about four billion new names, which hostile
// documents could reach), every entry is dropped and the table starts
// over: refs are never reused while an entry may hold one.
func (c *cache) internHost(name string) uint32 {
	if ref, ok := c.hosts.intern(name); ok {
		return ref
	}
	// Lock order: shards in order, then the host table (as get does).
	for i := range c.shards {
		c.shards[i].mu.Lock()
	}
	c.hosts.reset()
	for i := range c.shards {
		s := &c.shards[i]
		c.entries.Add(-int64(s.n))
		c.bytes.Add(-s.bytes)
		s.index, s.chunks, s.n, s.arena, s.dead, s.bytes = nil, nil, 0, nil, 0, 0
		s.mu.Unlock()
	}
	ref, _ := c.hosts.intern(name)
	return ref
}

// rec returns record i. REQUIRES: s.mu held.
func (s *shard) rec(i int) *rec { return &s.chunks[i/chunkRecs][i%chunkRecs] }

// str returns n arena bytes at off as a string aliasing the arena.
// REQUIRES: s.mu held.
func (s *shard) str(off uint32, n int) string {
	if n == 0 {
		return ""
	}
	return unsafe.String(&s.arena[off], n)
}

// webDID returns the did:web string of a flagWeb record. REQUIRES: s.mu held.
func (s *shard) webDID(r *rec) string {
	return s.str(binary.LittleEndian.Uint32(r.id[0:4]), int(binary.LittleEndian.Uint16(r.id[4:6])))
}

// appendArena appends b to the arena, after one byte for its length, and
// returns b's offset; the length byte is the caller's to set or ignore.
// REQUIRES: s.mu held.
func (s *shard) appendArena(b string) uint32 {
	if len(s.arena) == 0 {
		s.arena = append(s.arena, 0) // offset 0 means "none"
	}
	s.arena = append(s.arena, 0)
	off := uint32(len(s.arena))
	s.arena = append(s.arena, b...)
	return off
}

// find returns did's slot and record number, or the empty slot its probe
// ended on and -1. REQUIRES: s.mu held.
func (s *shard) find(h uint64, ref *didRef, did string) (slot, ri int) {
	if len(s.index) == 0 {
		return 0, -1
	}
	tag := uint32(uint8(h >> 24))
	for i := s.home(h); ; i = s.next(i) {
		v := s.index[i]
		if v == 0 {
			return i, -1
		}
		if v>>slotTagShift != tag {
			continue
		}
		ri := int(v&slotRecMask) - 1
		r := s.rec(ri)
		if ref.isPLC {
			if r.flags&flagWeb == 0 && r.id == ref.plc {
				return i, ri
			}
		} else if r.flags&flagWeb != 0 && s.webDID(r) == did {
			return i, ri
		}
	}
}

// insert adds r, whose DID hashes to h and is not present, growing the
// index and the chunks as needed. REQUIRES: s.mu held.
func (s *shard) insert(h uint64, r rec) {
	if (s.n+1)*5 > len(s.index)*4 {
		s.grow()
	}
	if s.n == len(s.chunks)*chunkRecs {
		s.chunks = append(s.chunks, new([chunkRecs]rec))
	}
	ri := s.n
	*s.rec(ri) = r
	s.n++
	i := s.home(h)
	for s.index[i] != 0 {
		i = s.next(i)
	}
	s.index[i] = uint32(uint8(h>>24))<<slotTagShift | uint32(ri+1)
}

// home returns the slot where the probe for hash h starts: the high 32
// bits scaled to the index length, which need not be a power of two.
// REQUIRES: s.mu held and a non-empty index.
func (s *shard) home(h uint64) int { return int((h >> 32) * uint64(len(s.index)) >> 32) }

// next returns the slot after i, wrapping. REQUIRES: s.mu held.
func (s *shard) next(i int) int {
	if i++; i == len(s.index) {
		return 0
	}
	return i
}

// grow enlarges the index by a quarter (16 slots at least) and reinserts
// every slot where its record's hash now leads. REQUIRES: s.mu held.
func (s *shard) grow() {
	old := s.index
	s.index = make([]uint32, len(old)+max(16, len(old)/4))
	for _, v := range old {
		if v == 0 {
			continue
		}
		i := s.home(s.hashRec(s.rec(int(v&slotRecMask) - 1)))
		for s.index[i] != 0 {
			i = s.next(i)
		}
		s.index[i] = v
	}
}

// hashRec returns the hash of the DID record r is keyed by (cache.hash of
// that DID). REQUIRES: s.mu held.
func (s *shard) hashRec(r *rec) uint64 {
	if r.flags&flagWeb != 0 {
		return maphash.String(s.seed, s.webDID(r))
	}
	return maphash.Bytes(s.seed, r.id[:])
}

// account recomputes s.bytes from the sizes of what the shard holds.
// REQUIRES: s.mu held.
func (s *shard) account() {
	s.bytes = int64(len(s.index))*4 + int64(len(s.chunks))*(recBytes*chunkRecs+8) + int64(cap(s.arena))
}

// removeLocked deletes record ri, found at index slot slot: the index
// closes the gap by shifting the rest of the probe run back (no
// tombstones), and the last record moves into ri. REQUIRES: s.mu held.
func (c *cache) removeLocked(s *shard, slot, ri int) {
	r := s.rec(ri)
	if r.handle != 0 {
		s.dead += 1 + int(s.arena[r.handle])
	}
	if r.flags&flagWeb != 0 {
		s.dead += 1 + int(binary.LittleEndian.Uint16(r.id[4:6]))
	}
	for i := slot; ; {
		s.index[i] = 0
		j := i
		for {
			j = s.next(j)
			v := s.index[j]
			if v == 0 {
				goto moved
			}
			home := s.home(s.hashRec(s.rec(int(v&slotRecMask) - 1)))
			// The entry at j may fill the hole at i unless its home lies
			// cyclically in (i, j].
			if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
				s.index[i] = v
				i = j
				break
			}
		}
	}
moved:
	last := s.n - 1
	if ri != last {
		lr := s.rec(last)
		// Point the last record's slot at its new place.
		i := s.slotOf(lr, last)
		s.index[i] = s.index[i]&^slotRecMask | uint32(ri+1)
		*r = *lr
	}
	*s.rec(last) = rec{}
	s.n--
	if s.n <= (len(s.chunks)-1)*chunkRecs && len(s.chunks) > 0 {
		s.chunks[len(s.chunks)-1] = nil
		s.chunks = s.chunks[:len(s.chunks)-1]
	}
	if s.n == 0 {
		s.index, s.arena, s.dead = nil, nil, 0
	}
	s.account()
	c.entries.Add(-1)
}

// evictOneLocked removes one record chosen by random sampling: the first
// expired one seen, otherwise the least recently touched of the sample.
// REQUIRES: s.mu held and s.n > 0.
func (c *cache) evictOneLocked(s *shard, now uint32) {
	victim, best := -1, -1
	t := uint16(now / touchEvery)
	for range evictSample {
		i := rand.IntN(s.n)
		r := s.rec(i)
		if now >= r.expires {
			victim = i
			break
		}
		if age := int(t - r.touched); age > best {
			victim, best = i, age
		}
	}
	c.removeLocked(s, s.slotOf(s.rec(victim), victim), victim)
	c.evictions.Add(1)
}

// slotOf returns the index slot of record ri. REQUIRES: s.mu held.
func (s *shard) slotOf(r *rec, ri int) int {
	i := s.home(s.hashRec(r))
	for int(s.index[i]&slotRecMask) != ri+1 {
		i = s.next(i)
	}
	return i
}

// compactLocked rebuilds the arena once most of it is dead. The old arena
// is left untouched (strings handed out may still point into it).
// REQUIRES: s.mu held.
func (c *cache) compactLocked(s *shard) {
	if s.dead < 4096 || s.dead < len(s.arena)/2 {
		return
	}
	fresh := make([]byte, 1, len(s.arena)-s.dead)
	for i := range s.n {
		r := s.rec(i)
		if r.flags&flagWeb != 0 {
			fresh = append(fresh, 0)
			off := uint32(len(fresh))
			fresh = append(fresh, s.webDID(r)...)
			binary.LittleEndian.PutUint32(r.id[0:4], off)
		}
		if r.handle != 0 {
			off := uint32(len(fresh))
			fresh = append(fresh, s.arena[r.handle:r.handle+1+uint32(s.arena[r.handle])]...)
			r.handle = off
		}
	}
	s.arena, s.dead = fresh, 0
	s.account()
}

// clone copies a DID that will outlive the call: callers may pass strings
// that alias a frame buffer.
func clone(s string) string { return string(append([]byte(nil), s...)) }

// hostTable interns PDS host names so records carry a 4-byte ref instead
// of a string. There are a few thousand real hosts, but every DID document
// names one, so hostile documents can add names without end: the table
// keeps two generations, each of at most maxNames names and maxBytes
// accounted bytes. When the current generation is full it becomes the old
// one and the old one is dropped. A cache hit on an entry of the old
// generation copies its host into the current one (cache.get), so hosts in
// use survive; an entry whose host is gone is a miss.
//
// Refs are numbered across generations: a generation holds the refs
// [base, base+len(names)), and the next generation starts where the
// current one ends, so a ref names at most one host for the table's whole
// life and a dropped generation's refs match nothing. When the numbering
// would pass maxRef, intern reports it and the cache starts over
// (cache.internHost). Safe for concurrent use.
type hostTable struct {
	maxNames int    // static; per generation
	maxBytes int64  // static; per generation
	maxRef   uint32 // static except in tests; the last ref handed out

	mu        sync.RWMutex
	cur, old  hostGen       // guarded by mu
	rotations atomic.Uint64 // generations dropped
}

// hostGen is one generation of the host table.
type hostGen struct {
	base  uint32            // ref of names[0]; ≥ 1 once used
	ids   map[string]uint32 // name → ref
	names []string          // ref-base → name, append-only
	bytes int64             // accounted memory
}

// has reports whether ref belongs to g.
func (g *hostGen) has(ref uint32) bool {
	return g.base != 0 && ref >= g.base && ref-g.base < uint32(len(g.names))
}

// hostNameBytes approximates what one name costs: the map slot (string
// header, ref, overhead) and the names slice slot, plus the bytes, counted
// twice because a name copied from the old generation is accounted in
// both.
func hostNameBytes(name string) int64 { return int64(2*len(name) + 64) }

// newHostTable returns a table of at most maxHosts names and budget bytes,
// both generations together.
func newHostTable(maxHosts int, budget int64) hostTable {
	return hostTable{
		maxNames: max(1, maxHosts/2),
		maxBytes: max(1, budget/2),
		maxRef:   ^uint32(0),
		cur:      hostGen{base: 1, ids: make(map[string]uint32)},
	}
}

// intern returns the ref of name in the current generation, adding it
// (and rotating first if the generation is full). ok is false when the
// refs are used up: the caller resets the table.
func (h *hostTable) intern(name string) (ref uint32, ok bool) {
	h.mu.RLock()
	ref, ok = h.cur.ids[name]
	h.mu.RUnlock()
	if ok {
		return ref, true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if ref, ok := h.cur.ids[name]; ok {
		return ref, true
	}
	if oldRef, ok := h.old.ids[name]; ok {
		name = h.old.names[oldRef-h.old.base] // share the old generation's copy
	} else {
		name = clone(name)
	}
	cost := hostNameBytes(name)
	if len(h.cur.names) >= h.maxNames || (len(h.cur.names) > 0 && h.cur.bytes+cost > h.maxBytes) {
		next := h.cur.base + uint32(len(h.cur.names))
		h.old = h.cur
		h.cur = hostGen{base: next, ids: make(map[string]uint32)}
		h.rotations.Add(1)
	}
	next := uint64(h.cur.base) + uint64(len(h.cur.names))
	if next > uint64(h.maxRef) {
		return 0, false
	}
	ref = uint32(next)
	h.cur.names = append(h.cur.names, name)
	h.cur.ids[name] = ref
	h.cur.bytes += cost
	return ref, true
}

// reset drops every name and starts the refs from 1 again. Only
// cache.internHost calls it, holding every shard lock.
func (h *hostTable) reset() {
	h.mu.Lock()
	h.cur = hostGen{base: 1, ids: make(map[string]uint32)}
	h.old = hostGen{}
	h.rotations.Add(1)
	h.mu.Unlock()
}

// name returns the host of ref, whether it is in the current generation,
// and false if its generation is gone.
func (h *hostTable) name(ref uint32) (name string, current, ok bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	switch {
	case h.cur.has(ref):
		return h.cur.names[ref-h.cur.base], true, true
	case h.old.has(ref):
		return h.old.names[ref-h.old.base], false, true
	}
	return "", false, false
}

// stats returns the names held (both generations; a name in both counts
// twice) and their accounted bytes.
func (h *hostTable) stats() (n int, bytes int64) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.cur.names) + len(h.old.names), h.cur.bytes + h.old.bytes
}
