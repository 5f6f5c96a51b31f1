package upstream

import (
	"sync"

	"github.com/atrelay/relay/pool"
)

// memBudget bounds the bytes of partial messages, the message buffers of
// all hosts together between a message's first byte and its delivery to the
// Sink (Config.MaxBufferedBytes). Buffers count at their capacity, which is
// what they cost. A delivered message is the Sink's to bound (the relay's
// intake share).
//
// A message asks twice at most per frame. Its first buffer (up to
// firstBufferBytes) is a first request. A message that outgrows it makes
// a grow request for the buffer class that holds the whole frame its
// header declared, once: the buffer still grows only as bytes arrive, but
// the reservation means it never waits again, so growing messages cannot
// wait for each other. First buffers may only use max − headroom, so the
// headroom (a largest message, or half the budget if that is less) is
// always there for growing ones once those ahead of them finish; a grow
// request needs room for at most the headroom, so a message bigger than
// the headroom passes with the budget exceeded by the difference. Every
// message in flight thus finishes, or its host is dropped when its message
// clock runs out (Config.MessageTimeout keeps running while it waits):
// nothing waits for bytes that can never be free.
//
// A host refused is starved: its turn ends, its socket stays unread (TCP
// flow control pushes back on the host), and it queues by kind, in order.
// Released bytes are granted to the queues' heads (counted as used at once,
// so no other reader takes them) and the hosts woken. While a queue has
// waiters, every request of its kind queues behind them.
//
// Safe for concurrent use. A nil *memBudget counts nothing and refuses
// nothing (frame reader tests). Host.grant and Host.queued are guarded by
// mu; a host waits for one request at a time.
type memBudget struct {
	max      int64 // static
	headroom int64 // static: first buffers leave this free
	l        *Loop // static: wakes granted hosts

	mu    sync.Mutex
	used  int64
	first waitQueue
	grow  waitQueue
}

// Request kinds.
const (
	askFirst = iota // a message's first buffer
	askGrow         // the rest of a message's frame, beyond what it holds
)

// waitQueue is a FIFO of starved hosts of one request kind; a dropped
// host's entry has h == nil.
type waitQueue struct {
	q    []budgetWaiter
	head int
}

// budgetWaiter is one starved host's request.
type budgetWaiter struct {
	h    *Host
	need int64
}

// empty drops dropped hosts' entries at the head and reports whether
// anyone is left waiting.
func (q *waitQueue) empty() bool {
	for q.head < len(q.q) && q.q[q.head].h == nil {
		q.pop()
	}
	return q.head == len(q.q)
}

func (q *waitQueue) pop() budgetWaiter {
	w := q.q[q.head]
	q.q[q.head] = budgetWaiter{}
	q.head++
	if q.head == len(q.q) {
		q.q, q.head = q.q[:0], 0
	}
	return w
}

// newMemBudget returns the budget of a loop whose messages may reach
// maxMessage bytes.
func newMemBudget(l *Loop, max int64, maxMessage int) *memBudget {
	return &memBudget{max: max, headroom: min(capFor(maxMessage), max/2), l: l}
}

// capFor is the capacity of the pooled buffer that holds n bytes.
func capFor(n int) int64 {
	for c := range pool.NumClasses {
		if s := pool.ClassSize(c); n <= s {
			return int64(s)
		}
	}
	return int64(n)
}

// fits reports whether a request of kind for n bytes can be counted now.
// REQUIRES b.mu.
func (b *memBudget) fits(kind int, n int64) bool {
	if kind == askFirst {
		return b.used+n <= b.max-b.headroom
	}
	return b.used+min(n, b.headroom) <= b.max
}

// take counts n bytes of kind for h and reports whether h may use them.
// On false h is queued (once) and will be granted its request and woken.
func (b *memBudget) take(h *Host, kind int, n int64) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	if h.grant >= n {
		h.grant -= n
		b.mu.Unlock()
		return true
	}
	b.used -= h.grant // granted less than this request: trade it in
	h.grant = 0
	q := &b.first
	if kind == askGrow {
		q = &b.grow
	}
	if q.empty() && b.fits(kind, n) {
		b.used += n
		b.mu.Unlock()
		return true
	}
	if !h.queued {
		h.queued = true
		q.q = append(q.q, budgetWaiter{h: h, need: n})
	}
	b.mu.Unlock()
	h.loop.m.starved.Inc()
	return false
}

// give returns n bytes and grants waiting hosts their requests, growing
// messages first, waking each host granted.
func (b *memBudget) give(n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.used -= n
	for _, kind := range [...]int{askGrow, askFirst} {
		q := &b.first
		if kind == askGrow {
			q = &b.grow
		}
		for !q.empty() {
			w := q.q[q.head]
			if !b.fits(kind, w.need) {
				break
			}
			q.pop()
			w.h.queued = false
			w.h.grant += w.need
			b.used += w.need
			b.mu.Unlock()
			b.l.wake(w.h)
			b.mu.Lock()
		}
	}
	b.mu.Unlock()
}

// settle gives back what is left of h's grant (its turn ended without
// using it, or its connection is gone) and takes h out of the queues.
func (b *memBudget) settle(h *Host) {
	if b == nil {
		return
	}
	b.mu.Lock()
	n := h.grant
	h.grant = 0
	if h.queued {
		h.queued = false
		for _, q := range [...]*waitQueue{&b.first, &b.grow} {
			for i := q.head; i < len(q.q); i++ {
				if q.q[i].h == h {
					q.q[i].h = nil
				}
			}
		}
	}
	b.mu.Unlock()
	b.give(n)
}

// inUse returns the bytes counted now, grants included.
func (b *memBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// waiting returns the number of starved hosts queued.
func (b *memBudget) waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, q := range [...]*waitQueue{&b.first, &b.grow} {
		for _, w := range q.q[q.head:] {
			if w.h != nil {
				n++
			}
		}
	}
	return n
}
