package relay

import "sort"

// heldTickets is, per worker, the tickets of the results held in any
// host's held list: the lowest of them caps the worker's durable mark
// (an overlay entry a held result set must not be evicted). Finding it
// by walking every held result once a group commit cost as much as was
// held; this keeps it at hand.
//
// A worker's results reach the sequencer in ticket order, and a result
// is held when it arrives, so each worker's tickets are added in
// ascending order. A released ticket is found by binary search and
// marked gone; gone tickets leave from the front as the lowest is asked
// for, or all at once when they outnumber the live ones: a queue holds
// at most twice its live tickets and 64 more.
//
// Owned by the sequencer goroutine.
type heldTickets []ticketQueue

// ticketQueue is one worker's held tickets, ascending, from head.
type ticketQueue struct {
	t    []uint64
	gone []bool
	head int
	live int
}

// add records a held result of worker w with ticket t.
func (h heldTickets) add(w int, t uint64) {
	q := &h[w]
	live := q.t[q.head:]
	if n := len(live); n > 0 && live[n-1] > t {
		// Not in ticket order: cannot happen (see heldTickets); kept
		// correct at the price of a shift rather than assumed.
		i := q.head + sort.Search(n, func(j int) bool { return live[j] > t })
		q.t = append(q.t[:i+1], q.t[i:]...)
		q.gone = append(q.gone[:i+1], q.gone[i:]...)
		q.t[i], q.gone[i] = t, false
	} else {
		q.t = append(q.t, t)
		q.gone = append(q.gone, false)
	}
	q.live++
}

// remove records that the held result of worker w with ticket t left.
func (h heldTickets) remove(w int, t uint64) {
	q := &h[w]
	live := q.t[q.head:]
	j := sort.Search(len(live), func(j int) bool { return live[j] >= t })
	for i := q.head + j; i < len(q.t) && q.t[i] == t; i++ {
		if !q.gone[i] {
			q.gone[i] = true
			q.live--
			break
		}
	}
	if q.live == 0 {
		q.t, q.gone, q.head = q.t[:0], q.gone[:0], 0
	} else if dead := len(q.t) - q.live; dead > 64 && dead > q.live {
		q.compact() // gone ones, and the room the lowest left at the front
	}
}

// compact drops the gone tickets.
func (q *ticketQueue) compact() {
	n := 0
	for i := q.head; i < len(q.t); i++ {
		if !q.gone[i] {
			q.t[n], q.gone[n] = q.t[i], false
			n++
		}
	}
	q.t, q.gone, q.head = q.t[:n], q.gone[:n], 0
}

// lowest returns worker w's lowest held ticket, 0 when none is held.
func (h heldTickets) lowest(w int) uint64 {
	q := &h[w]
	for q.head < len(q.t) && q.gone[q.head] {
		q.head++
	}
	if q.head == len(q.t) {
		return 0
	}
	return q.t[q.head]
}
