package relay

import (
	"sort"

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
	// bytes is the memory the held results take (result.size).
	bytes int64
	// gen is the tracker generation of the held results, mixed whether
	// they span more than one (a cursor reset while some were held).
	gen   uint64
	mixed bool
}

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
	l.r = append(l.r, result{})
	items = l.r[l.off:]
	copy(items[i+1:], items[i:])
	items[i] = x
	l.bytes += x.size
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
			l.bytes -= items[i].size
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
			l.bytes -= items[i].size
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
// blocked is scratch for the DIDs of the results that stay.
func (l *heldList) pass(ready []result, blocked *[][]byte) []result {
	items := l.items()
	b := (*blocked)[:0]
	k := 0
	for i := range items {
		x := &items[i]
		did := x.account()
		if passes(x) && (x.out == nil || !holdsDID(b, did)) {
			l.bytes -= x.size
			ready = append(ready, *x)
			continue
		}
		b = append(b, did)
		items[k] = *x
		k++
	}
	clear(items[k:])
	l.r = l.r[:l.off+k]
	clear(b)
	*blocked = b[:0]
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

// account returns the DID r is for: its event's, or did for a result
// without one; nil for a dropped frame.
func (r *result) account() []byte {
	if len(r.ev.DID) > 0 {
		return r.ev.DID
	}
	if r.did != "" {
		return []byte(r.did)
	}
	return nil
}

// holdsDID reports whether did is among dids.
func holdsDID(dids [][]byte, did []byte) bool {
	for _, d := range dids {
		if string(d) == string(did) {
			return true
		}
	}
	return false
}

// holds reports whether a result of did is held.
func (l *heldList) holds(did []byte) bool {
	items := l.items()
	for i := range items {
		if items[i].isFor(did) {
			return true
		}
	}
	return false
}

// isFor reports whether r is for account did (account, without copying
// did for a result without an event).
func (r *result) isFor(did []byte) bool {
	if len(r.ev.DID) > 0 {
		return string(r.ev.DID) == string(did)
	}
	return r.did != "" && r.did == string(did)
}

// empty reports whether nothing is held.
func (l *heldList) empty() bool { return l.off == len(l.r) }
