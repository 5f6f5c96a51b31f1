package relay

import (
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/syntax"
	"github.com/atrelay/relay/store"
)

// acctState is the worker's view of one account: the latest accepted state,
// which may not be durable yet (ticket above the worker's durable mark).
// Owned by the worker whose key the DID hashes to.
//
// It is two heap objects, the struct and buf, so that a large overlay
// costs the garbage collector little: buf holds the DID, rev, commit CID
// and data CID back to back,
//
//	buf: did | rev | commit | data
//	        didEnd revEnd  commitEnd  len(buf)
//
// and the accessors view it. The DID prefix is written once, when the
// buffer is made, and never again (setState writes after it, and a state
// that does not fit moves to a new buffer); a buffer is never reused for
// another account. That is what makes did's unsafe.String view safe: the
// bytes under it never change while the string exists.
type acctState struct {
	buf                       []byte
	ticket                    uint64
	host                      store.HostID
	didEnd, revEnd, commitEnd uint32
	known                     bool // the store has (or will have, once durable) a row
	upstream                  store.AccountStatus
	local                     store.LocalStatus
}

// did returns the account's DID. The string views the entry's buffer: it
// stays valid for good, but holding it holds the whole buffer (about 128
// bytes), after an eviction too, so a long-lived holder keeps a copy
// (resyncs.request does).
func (a *acctState) did() string {
	return unsafe.String(unsafe.SliceData(a.buf), int(a.didEnd))
}

// rev returns the last accepted rev (empty before the first commit). Like
// commit and data it views the entry and is valid until the next setState
// of the entry; its capacity ends with it, so appending to it copies.
func (a *acctState) rev() []byte { return a.buf[a.didEnd:a.revEnd:a.revEnd] }

// commit returns the binary CID of the last accepted commit.
func (a *acctState) commit() []byte { return a.buf[a.revEnd:a.commitEnd:a.commitEnd] }

// data returns the binary CID of that commit's MST root.
func (a *acctState) data() []byte { return a.buf[a.commitEnd:len(a.buf):len(a.buf)] }

// stateRoom is the room a new entry's buffer keeps after the DID when its
// state is smaller: a TID and two 36-byte CIDs, what nearly every commit
// sets, so an account's first commit does not move its buffer.
const stateRoom = syntax.TIDLen + 2*cid.BlessedLen

// The per-entry memory estimate (overlay.entryBytes: acctStateBytes +
// cap(buf) + overlaySlotBytes, 256 bytes for a did:plc with a commit),
// checked against the heap by TestOverlayBytesEstimate.
const (
	// acctStateBytes is acctState's allocation: its size rounded up to
	// the allocator's size class (TestOverlayBytesEstimate checks it).
	acctStateBytes = 64
	// overlaySlotBytes is an entry's share of the map: a slot holds the
	// string key and the pointer (24 bytes) plus a control byte, about 27
	// bytes with the size-class rounding of a table's groups, and a table
	// is never below 7/16 full once grown (it doubles, or splits in two,
	// at 7/8 full): at most 61 bytes an entry.
	overlaySlotBytes = 64
)

// overlay is one worker's cache of account states, in front of the store:
// what the worker accepted and the rows it read. Owned by that worker
// goroutine (scratch); only published is read by others.
//
// It is bounded by bytes, an estimate of what its entries take (see
// entryBytes). Beyond limit, durable entries (ticket at or below the
// worker's durable mark) are forgotten, a chunk at a time; an entry not yet
// durable is the only record of its state and is never evicted, so the
// overlay may stay over limit while the sequencer is behind.
type overlay struct {
	m         map[string]*acctState // keys are the entries' did views
	bytes     int64                 // sum of entryBytes over m
	limit     int64
	published *atomic.Int64 // bytes, for relay_overlay_bytes (read on scrape)
	// stuck: the last evict could not get down to its target, what is
	// left not yet durable. The next full scan waits for the durable
	// mark to reach rescanAt, the ticket at or below which, by a sample
	// of what was left, enough entries lie to get back to the target:
	// until then a scan would find little more to forget than the
	// entries added since, at the cost of the whole map (on every add
	// while the mark stands still, on every commit while it creeps: the
	// sequencer behind a slow disk, or holding a result of this worker
	// behind a frame parked for a slow DID document). Those entries are
	// looked at one add later, when their frame is done and their ticket
	// set: prev is the last one added.
	stuck    bool
	rescanAt uint64
	prev     *acctState
}

func newOverlay(limit int64, published *atomic.Int64) overlay {
	return overlay{m: make(map[string]*acctState, 1024), limit: limit, published: published}
}

// entryBytes is the estimate of what a takes: its struct, its buffer and
// its share of the map.
func entryBytes(a *acctState) int64 {
	return acctStateBytes + int64(cap(a.buf)) + overlaySlotBytes
}

// get returns did's entry, or nil.
func (o *overlay) get(did []byte) *acctState { return o.m[string(did)] }

// add makes did's entry, from the store's row when found, else as a new
// active account; it first evicts if the overlay is over its bound.
// durable is the worker's durable mark. did must not be in the overlay.
func (o *overlay) add(did []byte, row *store.Account, found bool, durable uint64) *acctState {
	if o.bytes >= o.limit {
		if !o.stuck || durable >= o.rescanAt {
			o.evict(durable)
		} else if p := o.prev; p != nil && p.ticket <= durable && o.m[p.did()] == p {
			// Loaded for a frame that changed nothing (rejected, say):
			// durable already.
			o.forget(p.did(), p)
		}
	}
	a := &acctState{known: found, upstream: store.StatusActive, local: store.LocalActive, didEnd: uint32(len(did))}
	var rev, commit, data []byte
	if found {
		a.host, a.upstream, a.local = row.Host, row.UpstreamStatus, row.LocalStatus
		rev, commit, data = row.Rev, row.Commit, row.Data
	}
	a.buf = newStateBuf(did, len(rev)+len(commit)+len(data))
	a.fill(rev, commit, data)
	o.m[a.did()] = a
	o.bytes += entryBytes(a)
	o.published.Store(o.bytes)
	o.prev = a
	return a
}

// forget drops entry a, keyed k, from the overlay; the caller publishes
// the new size.
func (o *overlay) forget(k string, a *acctState) {
	delete(o.m, k)
	o.bytes -= entryBytes(a)
}

// newStateBuf returns a buffer holding did with room for state bytes
// (at least stateRoom), its capacity the whole allocation (slices.Grow
// rounds up to the size class), so that the estimate sees what it costs.
func newStateBuf(did []byte, state int) []byte {
	return append(slices.Grow([]byte(nil), len(did)+max(state, stateRoom)), did...)
}

// setState records a's new repo state, in its buffer when it fits, else in
// a new one (the map's key moves with it, so the old buffer is freed).
// rev, commit and data must not view a's buffer.
func (o *overlay) setState(a *acctState, rev, commit, data []byte) {
	if need := int(a.didEnd) + len(rev) + len(commit) + len(data); need > cap(a.buf) {
		o.forget(a.did(), a)
		a.buf = newStateBuf(a.buf[:a.didEnd], need-int(a.didEnd))
		o.m[a.did()] = a
		o.bytes += entryBytes(a)
		o.published.Store(o.bytes)
	}
	a.fill(rev, commit, data)
}

// fill writes the state after the DID; a.buf has the room.
func (a *acctState) fill(rev, commit, data []byte) {
	b := append(a.buf[:a.didEnd], rev...)
	a.revEnd = uint32(len(b))
	b = append(b, commit...)
	a.commitEnd = uint32(len(b))
	a.buf = append(b, data...)
}

// evictSample is how many tickets of the entries evict cannot forget it
// keeps to choose rescanAt.
const evictSample = 256

// evict forgets durable entries, at or below durable, until the overlay is
// an eighth under its bound (or none is left to forget): a chunk at a time,
// so that the scan is paid once per many adds.
func (o *overlay) evict(durable uint64) {
	target := o.limit - o.limit/8
	var sample [evictSample]uint64
	n := 0
	for k, a := range o.m {
		if a.ticket > durable {
			if n < len(sample) {
				sample[n] = a.ticket
				n++
			}
			continue
		}
		o.forget(k, a)
		if o.bytes <= target {
			break
		}
	}
	o.published.Store(o.bytes)
	if o.stuck = o.bytes > target; !o.stuck {
		return
	}
	// Everything left is above durable. The map's order is random, so the
	// first tickets met are a fair sample of them: the one a share of the
	// sample lies at or below, the share of the bytes to forget, is where
	// enough will be durable.
	o.rescanAt = durable + 1
	if n > 0 {
		s := sample[:n]
		slices.Sort(s)
		i := int(float64(o.bytes-target) / float64(o.bytes) * float64(n))
		o.rescanAt = s[min(i, n-1)]
	}
}
