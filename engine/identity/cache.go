package identity

import (
	"encoding/binary"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/atrelay/relay/engine/atcrypto"
)

// Per-entry memory charged against the byte budget, beyond the handle bytes.
// They approximate the Go map slot (key + entry, at the average load of a
// swiss table, about 0.65) and are checked against runtime.MemStats by
// TestBytesPerEntry, which fails if accounting and reality drift apart.
const (
	plcEntryBytes = 112 // [15]byte key + 56-byte entry, slot 72 B / 0.65 load
	webEntryBytes = 136 // string header key + entry + the DID's own allocation (len added)
)

// touchEvery is how stale (in seconds) an entry's last-use time may get
// before a hit rewrites it; hits within the same minute cost no map write.
const touchEvery = 60

// evictSample is how many entries eviction compares (random-sample LRU, as
// in Redis): enough to usually pick an expired or cold entry, cheap enough
// to do on every insert at budget.
const evictSample = 5

// entry is the fixed-size, pointer-free value stored per DID (56 bytes).
// Times are seconds since the cache's epoch.
type entry struct {
	hostGen   uint32 // host table generation hostID belongs to; 0 in negative entries
	hostID    uint32 // 1-based id in that generation; 0 in negative entries
	handleOff uint32 // offset of the handle in the shard's arena
	expires   uint32 // entry is stale at or after this second
	touched   uint32 // last hit, at touchEvery granularity
	key       atcrypto.PublicKey
	handleLen uint8
	reason    Reason // ReasonNone: positive entry; otherwise a cached failure
}

// shard is one lock's worth of the cache.
type shard struct {
	mu sync.Mutex

	// All fields below are guarded by mu.
	plc map[plcKey]entry // did:plc entries, keyed by the decoded identifier
	web map[string]entry // other DIDs (did:web), keyed by the DID string
	// handles is an append-only arena of handle bytes. Bytes below
	// len(handles) are never rewritten, so strings handed out by get may
	// point into it without copying; compaction allocates a new arena.
	handles []byte
	dead    int   // arena bytes no entry refers to any more
	bytes   int64 // accounted size: entry costs + len(handles)
}

// cache is a sharded, byte-budgeted map from DID to entry. Safe for
// concurrent use.
type cache struct {
	// Static after newCache.
	shards      []shard
	mask        uint32
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
		mask:        uint32(nShards - 1),
		shardBudget: (budget - hostBudget) / int64(nShards),
		seed:        maphash.MakeSeed(),
		hosts:       newHostTable(maxHosts, hostBudget),
	}
	for i := range c.shards {
		c.shards[i].plc = make(map[plcKey]entry)
		c.shards[i].web = make(map[string]entry)
	}
	return c
}

func (c *cache) shardFor(ref *didRef, did string) *shard {
	var h uint32
	if ref.isPLC {
		// did:plc identifiers are hash output, so their bytes are uniform.
		h = binary.LittleEndian.Uint32(ref.plc[:4])
	} else {
		h = uint32(maphash.String(c.seed, did))
	}
	return &c.shards[h&c.mask]
}

// get returns the entry for did, its handle and, for a positive entry,
// its PDS host. ok is false when there is no entry, it has expired, or its
// host has left the host table (the entry is then dropped, so the DID is
// resolved again). The handle aliases the shard arena, which is never
// overwritten, so it stays valid indefinitely; so does the host.
func (c *cache) get(ref *didRef, did string, now uint32) (e entry, handle, host string, ok bool) {
	s := c.shardFor(ref, did)
	s.mu.Lock()
	if ref.isPLC {
		e, ok = s.plc[ref.plc]
	} else {
		e, ok = s.web[did]
	}
	if !ok || now >= e.expires {
		s.mu.Unlock()
		return entry{}, "", "", false
	}
	dirty := false
	if e.reason == ReasonNone {
		var current bool
		host, current, ok = c.hosts.name(e.hostGen, e.hostID)
		if !ok {
			c.deleteLocked(s, ref, did)
			s.mu.Unlock()
			return entry{}, "", "", false
		}
		if !current {
			// A host in use moves to the current generation, so only
			// hosts nobody asked for during a whole generation go.
			e.hostGen, e.hostID = c.hosts.intern(host)
			dirty = true
		}
	}
	if now-e.touched >= touchEvery {
		e.touched = now
		dirty = true
	}
	if dirty {
		if ref.isPLC {
			s.plc[ref.plc] = e
		} else {
			s.web[did] = e
		}
	}
	if e.handleLen > 0 {
		handle = unsafe.String(&s.handles[e.handleOff], int(e.handleLen))
	}
	s.mu.Unlock()
	return e, handle, host, true
}

// put stores e (with handle copied into the arena) for did, replacing any
// previous entry, then evicts until the shard is within its budget.
func (c *cache) put(ref *didRef, did string, e entry, handle string, now uint32) {
	s := c.shardFor(ref, did)
	s.mu.Lock()
	defer s.mu.Unlock()
	c.deleteLocked(s, ref, did)
	if len(handle) > 0 && len(handle) <= 255 {
		e.handleOff, e.handleLen = uint32(len(s.handles)), uint8(len(handle))
		s.handles = append(s.handles, handle...)
		s.bytes += int64(len(handle))
		c.bytes.Add(int64(len(handle)))
	}
	e.touched = now
	var cost int64
	if ref.isPLC {
		s.plc[ref.plc] = e
		cost = plcEntryBytes
	} else {
		did = clone(did)
		s.web[did] = e
		cost = webEntryBytes + int64(len(did))
	}
	s.bytes += cost
	c.bytes.Add(cost)
	c.entries.Add(1)
	for s.bytes > c.shardBudget && len(s.plc)+len(s.web) > 1 {
		c.evictOneLocked(s, now)
	}
	c.compactLocked(s)
}

// remove deletes did's entry if present (Purge).
func (c *cache) remove(ref *didRef, did string) {
	s := c.shardFor(ref, did)
	s.mu.Lock()
	c.deleteLocked(s, ref, did)
	c.compactLocked(s)
	s.mu.Unlock()
}

// deleteLocked removes did's entry and its accounting. REQUIRES: s.mu held.
func (c *cache) deleteLocked(s *shard, ref *didRef, did string) {
	var e entry
	var ok bool
	var cost int64
	if ref.isPLC {
		if e, ok = s.plc[ref.plc]; ok {
			delete(s.plc, ref.plc)
			cost = plcEntryBytes
		}
	} else if e, ok = s.web[did]; ok {
		delete(s.web, did)
		cost = webEntryBytes + int64(len(did))
	}
	if !ok {
		return
	}
	s.dead += int(e.handleLen)
	s.bytes -= cost
	c.bytes.Add(-cost)
	c.entries.Add(-1)
}

// evictOneLocked removes one entry chosen by random sampling: the first
// expired entry seen, otherwise the least recently touched of the sample.
// Go map iteration starts at a random position, which provides the
// sampling. REQUIRES: s.mu held.
func (c *cache) evictOneLocked(s *shard, now uint32) {
	usePLC := len(s.web) == 0 || (len(s.plc) > 0 && rand.IntN(len(s.plc)+len(s.web)) < len(s.plc))
	if usePLC {
		var victim plcKey
		best := ^uint32(0)
		n := 0
		for k, e := range s.plc {
			age := e.touched
			if now >= e.expires {
				age = 0
			}
			if age < best {
				victim, best = k, age
			}
			if n++; n == evictSample || age == 0 {
				break
			}
		}
		ref := didRef{isPLC: true, plc: victim}
		c.deleteLocked(s, &ref, "")
	} else {
		var victim string
		best := ^uint32(0)
		n := 0
		for k, e := range s.web {
			age := e.touched
			if now >= e.expires {
				age = 0
			}
			if age < best {
				victim, best = k, age
			}
			if n++; n == evictSample || age == 0 {
				break
			}
		}
		c.deleteLocked(s, &didRef{}, victim)
	}
	c.evictions.Add(1)
}

// compactLocked rebuilds the handle arena once most of it is dead. The old
// arena is left untouched (strings handed out may still point into it).
// REQUIRES: s.mu held.
func (c *cache) compactLocked(s *shard) {
	if s.dead < 4096 || s.dead < len(s.handles)/2 {
		return
	}
	fresh := make([]byte, 0, len(s.handles)-s.dead)
	for k, e := range s.plc {
		if e.handleLen > 0 {
			off := len(fresh)
			fresh = append(fresh, s.handles[e.handleOff:e.handleOff+uint32(e.handleLen)]...)
			e.handleOff = uint32(off)
			s.plc[k] = e
		}
	}
	for k, e := range s.web {
		if e.handleLen > 0 {
			off := len(fresh)
			fresh = append(fresh, s.handles[e.handleOff:e.handleOff+uint32(e.handleLen)]...)
			e.handleOff = uint32(off)
			s.web[k] = e
		}
	}
	saved := int64(len(s.handles) - len(fresh))
	s.handles, s.dead = fresh, 0
	s.bytes -= saved
	c.bytes.Add(-saved)
}

// clone copies a DID that will outlive the call: callers may pass strings
// that alias a frame buffer.
func clone(s string) string { return string(append([]byte(nil), s...)) }

// hostTable interns PDS host names so entries carry a generation and a
// 4-byte id instead of a string. There are a few thousand real hosts, but
// every DID document names one, so hostile documents can add names without
// end: the table keeps two generations, each of at most maxNames names and
// maxBytes accounted bytes. When the current generation is full it becomes
// the old one and the old one is dropped. A cache hit on an entry of the
// old generation copies its host into the current one (cache.get), so hosts
// in use survive; an entry whose generation is gone is a miss. Safe for
// concurrent use.
type hostTable struct {
	maxNames int   // static; per generation
	maxBytes int64 // static; per generation

	mu        sync.RWMutex
	cur, old  hostGen       // guarded by mu
	rotations atomic.Uint64 // generations dropped
}

// hostGen is one generation of the host table.
type hostGen struct {
	gen   uint32            // ≥ 1 once used; 0 only for the empty initial old generation
	ids   map[string]uint32 // name → 1-based id
	names []string          // id-1 → name, append-only
	bytes int64             // accounted memory
}

// hostNameBytes approximates what one name costs: the map slot (string
// header, id, overhead) and the names slice slot, plus the bytes, counted
// twice because a name copied from the old generation is accounted in
// both.
func hostNameBytes(name string) int64 { return int64(2*len(name) + 64) }

// newHostTable returns a table of at most maxHosts names and budget bytes,
// both generations together.
func newHostTable(maxHosts int, budget int64) hostTable {
	return hostTable{
		maxNames: max(1, maxHosts/2),
		maxBytes: max(1, budget/2),
		cur:      hostGen{gen: 1, ids: make(map[string]uint32)},
	}
}

// intern returns the generation and 1-based id of name in the current
// generation, adding it (and rotating first if the generation is full).
func (h *hostTable) intern(name string) (gen, id uint32) {
	h.mu.RLock()
	id, ok := h.cur.ids[name]
	gen = h.cur.gen
	h.mu.RUnlock()
	if ok {
		return gen, id
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if id, ok := h.cur.ids[name]; ok {
		return h.cur.gen, id
	}
	if oldID, ok := h.old.ids[name]; ok {
		name = h.old.names[oldID-1] // share the old generation's copy
	} else {
		name = clone(name)
	}
	cost := hostNameBytes(name)
	if len(h.cur.names) >= h.maxNames || (len(h.cur.names) > 0 && h.cur.bytes+cost > h.maxBytes) {
		h.old = h.cur
		h.cur = hostGen{gen: h.old.gen + 1, ids: make(map[string]uint32)}
		h.rotations.Add(1)
	}
	h.cur.names = append(h.cur.names, name)
	id = uint32(len(h.cur.names))
	h.cur.ids[name] = id
	h.cur.bytes += cost
	return h.cur.gen, id
}

// name returns the host for an id of generation gen, whether that is the
// current generation, and false if the generation is gone.
func (h *hostTable) name(gen, id uint32) (name string, current, ok bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	switch {
	case gen == h.cur.gen && id >= 1 && int(id) <= len(h.cur.names):
		return h.cur.names[id-1], true, true
	case gen != 0 && gen == h.old.gen && id >= 1 && int(id) <= len(h.old.names):
		return h.old.names[id-1], false, true
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
