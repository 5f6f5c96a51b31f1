package relay

import "sort"

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
// or not of generation gen, and drops them from the list.
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
		}
		ready = append(ready, items[:j]...)
		clear(items[:j])
		l.off += j
		return ready
	}
	k := 0
	for i := range items {
		if items[i].seq <= low || items[i].gen != gen {
			l.bytes -= items[i].size
			ready = append(ready, items[i])
		} else {
			items[k] = items[i]
			k++
		}
	}
	clear(items[k:])
	l.r = l.r[:l.off+k]
	l.gen, l.mixed = gen, false // what is left is all of gen
	return ready
}

// empty reports whether nothing is held.
func (l *heldList) empty() bool { return l.off == len(l.r) }
