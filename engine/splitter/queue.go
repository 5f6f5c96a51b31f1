package splitter

import (
	"context"
	"sync"

	"github.com/atrelay/relay/pool"
	"github.com/atrelay/relay/store"
)

// item is one upstream frame on its way to the log. The reader fills it and
// hands it, with the frame's one reference, to the queue; the writer takes
// it from there. did is a view into the frame.
type item struct {
	seq   uint64
	kind  store.Kind
	did   []byte
	frame *pool.Frame
}

// queue hands frames from the reader goroutine to the writer goroutine,
// bounded in frames and in buffer bytes: a full queue blocks the reader, so
// the upstream's TCP window, not our heap, absorbs a slow disk. Safe for
// one pusher and one taker.
type queue struct {
	// Static after newQueue.
	maxBytes, maxItems int
	notEmpty           chan struct{} // one slot: push wakes take
	notFull            chan struct{} // one slot: take wakes push

	mu sync.Mutex
	// Guarded by mu.
	items []item
	bytes int // sum of the queued frames' capacities
}

func newQueue(maxBytes, maxItems int) *queue {
	return &queue{
		maxBytes: maxBytes, maxItems: maxItems,
		notEmpty: make(chan struct{}, 1), notFull: make(chan struct{}, 1),
		items: make([]item, 0, min(maxItems, 1024)),
	}
}

// push appends it, waiting while the queue is full; the queue then owns
// it.frame. On ctx's end it returns ctx.Err() and the caller keeps it.
// A frame is admitted whenever the queue is below its bounds, so the bytes
// held exceed maxBytes by at most one frame.
func (q *queue) push(ctx context.Context, it item) error {
	for {
		q.mu.Lock()
		if q.bytes < q.maxBytes && len(q.items) < q.maxItems {
			q.items = append(q.items, it)
			q.bytes += it.frame.Cap()
			q.mu.Unlock()
			signal(q.notEmpty)
			return nil
		}
		q.mu.Unlock()
		select {
		case <-q.notFull:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// take waits for at least one item and moves up to n of them, oldest
// first, to dst, which it returns; the caller then owns their frames. On
// ctx's end it returns ctx.Err().
func (q *queue) take(ctx context.Context, dst []item, n int) ([]item, error) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			k := min(n, len(q.items))
			dst = append(dst, q.items[:k]...)
			for i := range k {
				q.bytes -= q.items[i].frame.Cap()
			}
			rest := copy(q.items, q.items[k:])
			clear(q.items[rest:])
			q.items = q.items[:rest]
			q.mu.Unlock()
			signal(q.notFull)
			return dst, nil
		}
		q.mu.Unlock()
		select {
		case <-q.notEmpty:
		case <-ctx.Done():
			return dst, ctx.Err()
		}
	}
}

// drain releases every queued frame; called once both goroutines ended.
func (q *queue) drain() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := range q.items {
		q.items[i].frame.Release()
	}
	clear(q.items)
	q.items = q.items[:0]
	q.bytes = 0
}

// heldBytes returns the queued frames' buffer bytes, for the gauge.
func (q *queue) heldBytes() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// signal does a non-blocking send on a one-slot channel.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
