package relay

import (
	"hash/maphash"
	"sort"
	"unsafe"

	"github.com/atrelay/relay/engine/atproto/event"
)

// heldList is one host's held results in seq order, equal seqs in arrival
// order (a relay-generated result follows the account's result it was
// queued behind). The results are r[off:]: releasing a prefix, the usual
// case, only advances off, and the front is reused once the slice is full,
// so holding and releasing move each result a constant number of times
// however long the list grows (it grows while one worker runs ahead of the
// other through a busy host's frames).
//
// Owned by the sequencer goroutine.
type heldList struct {
	r   []result
	off int
	// bytes is the memory the held results' frames take (result.size);
	// memory adds the list's own.
	bytes int64
	// gen is the tracker generation of the held results, mixed whether
	// they span more than one (a cursor reset while some were held).
	gen   uint64
	mixed bool
	// accounts counts the held results of each account by the hash of
	// its DID (accountHash), so that asking whether an account has a
	// result held (holds, followHeld) does not scan the list: while a
	// host's head is parked every incoming result asks, and a host can
	// have thousands held. Two DIDs with one hash can only make a result
	// wait that could have passed.
	accounts map[uint64]int32
	// counted is memory as of the sequencer's last recount: its part of
	// the sequencer's heldBytes.
	counted int64
	// tix is the sequencer's held tickets, shared by every list; nil in
	// tests of a list alone.
	tix heldTickets
}

// heldSlotBytes is what the list takes per slot beyond the frames: the
// result itself and, at most one per slot, its account's count (32) and
// its ticket in heldTickets (9 bytes, at most twice over).
const heldSlotBytes = int64(unsafe.Sizeof(result{})) + 32 + 24

// memory is what the list holds: its results' frames, and its slots,
// which a dropped frame takes too (without them a host whose frames the
// workers drop could grow the list without limit behind one slow frame)
// and which stay allocated once grown, as does the accounts map.
func (l *heldList) memory() int64 { return l.bytes + int64(cap(l.r))*heldSlotBytes }

// items returns the held results in order; valid until the next change.
func (l *heldList) items() []result { return l.r[l.off:] }

// insert adds x after every held result whose seq is not above x's.
// Results of a host mostly finish in about seq order, so x usually lands
// at or near the end.
func (l *heldList) insert(x result) {
	if l.off == len(l.r) {
		l.r, l.off, l.gen, l.mixed = l.r[:0], 0, x.gen, false
	} else if x.gen != l.gen {
		l.mixed = true
	}
	if l.off > 0 && len(l.r) == cap(l.r) && l.off >= len(l.r)/2 {
		n := copy(l.r, l.r[l.off:])
		clear(l.r[n:])
		l.r, l.off = l.r[:n], 0
	}
	items := l.r[l.off:]
	i := len(items)
	if i > 0 && items[i-1].seq > x.seq {
		i = sort.Search(len(items), func(j int) bool { return items[j].seq > x.seq })
	}
	if l.off > 0 && i < len(items)/2 {
		// Nearer the front, where a released prefix left room: move the
		// results before x down one. A host's completed lowest frame lands
		// at the front, to be released at once, however long the list.
		copy(l.r[l.off-1:], items[:i])
		l.off--
		l.r[l.off+i] = x
	} else {
		l.r = append(l.r, result{})
		items = l.r[l.off:]
		copy(items[i+1:], items[i:])
		items[i] = x
	}
	l.join(&x)
}

// join counts x, entering the list: its frame's bytes, its account, its
// ticket. leave undoes it.
func (l *heldList) join(x *result) {
	l.bytes += x.size
	l.count(x, 1)
	if l.tix != nil {
		l.tix.add(x.worker, x.ticket)
	}
}

// leave takes x, leaving the list, out of its counts.
func (l *heldList) leave(x *result) {
	l.bytes -= x.size
	l.count(x, -1)
	if l.tix != nil {
		l.tix.remove(x.worker, x.ticket)
	}
}

// count adds delta to the held results of x's account.
func (l *heldList) count(x *result, delta int32) {
	h, ok := x.accountHash()
	if !ok {
		return
	}
	if l.accounts == nil {
		l.accounts = make(map[uint64]int32)
	}
	if n := l.accounts[h] + delta; n > 0 {
		l.accounts[h] = n
	} else {
		delete(l.accounts, h)
	}
}

// release appends to ready, in order, every held result at or below low
// or not of generation gen, and drops them from the list. Each released
// result of gen carries its seq as its cursor, the last one low: the seqs
// between are complete without a result (dropped before a worker) or
// passed earlier, and a group commit may end anywhere in the group.
func (l *heldList) release(ready []result, gen uint64, low int64) []result {
	items := l.items()
	if !l.mixed && l.gen == gen {
		// One generation: what is released is a prefix.
		j := 0
		for j < len(items) && items[j].seq <= low {
			j++
		}
		for i := range items[:j] {
			l.leave(&items[i])
			items[i].cursor = items[i].seq
		}
		if j > 0 {
			// The group may be split between group commits: only its last
			// result may carry the cursor past the seqs it completes.
			items[j-1].cursor = low
		}
		ready = append(ready, items[:j]...)
		clear(items[:j])
		l.off += j
		return ready
	}
	k, last := 0, -1
	for i := range items {
		if items[i].seq <= low || items[i].gen != gen {
			l.leave(&items[i])
			if items[i].gen == gen {
				items[i].cursor = items[i].seq
				last = len(ready)
			}
			ready = append(ready, items[i])
		} else {
			items[k] = items[i]
			k++
		}
	}
	if last >= 0 {
		ready[last].cursor = low
	}
	clear(items[k:])
	l.r = l.r[:l.off+k]
	l.gen, l.mixed = gen, false // what is left is all of gen
	return ready
}

// pass appends to ready, in order, the held results that may pass the
// parked frame their host waits for (passes), and drops them from the
// list: each one whose account has no result staying held before it.
// staying is scratch for the hashes of the accounts of the results that
// stay; pass leaves it empty.
func (l *heldList) pass(ready []result, staying map[uint64]struct{}) []result {
	items := l.items()
	k := 0
	for i := range items {
		x := &items[i]
		h, ok := x.accountHash()
		if _, behind := staying[h]; passes(x) && (x.out == nil || !ok || !behind) {
			l.leave(x)
			ready = append(ready, *x)
			continue
		}
		if ok {
			staying[h] = struct{}{}
		}
		items[k] = *x
		k++
	}
	clear(items[k:])
	l.r = l.r[:l.off+k]
	clear(staying)
	return ready
}

// passes reports whether a held result may be released ahead of the
// parked frame its host waits for (OrderAccount): a dropped frame, which
// publishes nothing, or an upstream #commit, whose rev makes its second
// delivery after a crash (the host resumes below the parked frame) a
// stale duplicate the workers drop. An #identity or #account has no such
// guard, and a relay-generated result keeps its place behind its account.
func passes(r *result) bool {
	switch {
	case r.follows || r.did != "":
		return false
	case r.out == nil:
		return true
	}
	return r.kind == event.KindCommit
}

// holds reports whether a result of x's account is held.
func (l *heldList) holds(x *result) bool {
	h, ok := x.accountHash()
	return ok && l.accounts[h] > 0
}

// accountSeed seeds accountHash: random per process, so a host cannot
// choose DIDs that collide.
var accountSeed = maphash.MakeSeed()

// accountHash returns the hash of the DID r is for (its event's, or did
// for a result without one), and false for a dropped frame, which is for
// none.
func (r *result) accountHash() (uint64, bool) {
	if len(r.ev.DID) > 0 {
		return maphash.Bytes(accountSeed, r.ev.DID), true
	}
	if r.did != "" {
		return maphash.String(accountSeed, r.did), true
	}
	return 0, false
}

// sameAccount reports whether a and b are for one account.
func sameAccount(a, b *result) bool {
	da, db := a.ev.DID, b.ev.DID
	switch {
	case len(da) == 0 && a.did == "", len(db) == 0 && b.did == "":
		return false
	case len(da) == 0 && len(db) == 0:
		return a.did == b.did
	case len(da) == 0:
		return a.did == string(db)
	case len(db) == 0:
		return string(da) == b.did
	}
	return string(da) == string(db)
}

// empty reports whether nothing is held.
func (l *heldList) empty() bool { return l.off == len(l.r) }
