package upstream

import "sync"

// hostQueue is an unbounded FIFO of hosts with a blocking pop. It never
// blocks a pusher, so the poller, the clock, a Sink calling Resume and a
// reader requeueing itself cannot deadlock on a full queue; its length is
// bounded by the number of hosts because a host's state machine lets it be
// queued at most once at a time. Safe for concurrent use.
type hostQueue struct {
	mu     sync.Mutex
	cond   sync.Cond // waits on mu
	buf    []*Host   // ring buffer, guarded by mu
	head   int       // guarded by mu
	n      int       // guarded by mu
	closed bool      // guarded by mu
}

func newHostQueue() *hostQueue {
	q := &hostQueue{buf: make([]*Host, 64)}
	q.cond.L = &q.mu
	return q
}

// push appends h; after close it is a no-op (Close sweeps every host).
func (q *hostQueue) push(h *Host) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	if q.n == len(q.buf) {
		grown := make([]*Host, 2*len(q.buf))
		for i := range q.n {
			grown[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = h
	q.n++
	q.mu.Unlock()
	q.cond.Signal()
}

// pop blocks until a host is queued or the queue is closed (ok=false; hosts
// still queued are abandoned to Close's sweep).
func (q *hostQueue) pop() (h *Host, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil, false
	}
	h = q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return h, true
}

// close wakes every popper.
func (q *hostQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}
