package pool

import (
	"context"
	"errors"
	"hash/maphash"
	"runtime"
	"sync"
)

// Errors returned by Workers.
var (
	// ErrClosed is returned by a submit on a closed pool, including one that
	// was blocked waiting for space when Close began.
	ErrClosed = errors.New("pool: workers closed")
	// ErrQueueFull is returned by TrySubmit when the target worker's queue
	// has no room for the task.
	ErrQueueFull = errors.New("pool: worker queue full")
)

// Default queue bounds; a zero or negative WorkersConfig field means these,
// never "unbounded".
const (
	DefaultQueueItems = 1024
	DefaultQueueBytes = 64 << 20
)

// WorkersConfig sizes a Workers. Zero values select the defaults.
type WorkersConfig struct {
	// Workers is the number of goroutines; default runtime.GOMAXPROCS(0).
	Workers int
	// QueueItems bounds each worker's queue in tasks; default 1024.
	QueueItems int
	// QueueBytes bounds each worker's queued plus running task weight in
	// bytes; default 64 MiB. A task heavier than the bound is admitted when
	// its worker holds no weight at all, so it waits rather than deadlocks.
	QueueBytes int64
}

// Handler runs one task on a worker goroutine. scratch is that worker's
// private value (decoders, verifiers, buffers), reused across its tasks
// without locking; it must not escape to other goroutines.
type Handler[T, S any] func(scratch *S, task T)

// Workers is a fixed pool of goroutines with keyed dispatch: every task
// submitted with the same key runs on the same worker, in submission order,
// so per-key (per-DID) processing is sequential without locks. Queues are
// bounded in items and in bytes; submitting to a full queue blocks (Submit)
// or fails (TrySubmit). Tasks are values of T, not closures, so a submit
// does not allocate. Methods are safe for concurrent use.
type Workers[T, S any] struct {
	// Static after NewWorkers.
	handle   Handler[T, S]
	seed     maphash.Seed
	maxBytes int64
	workers  []worker[T, S]

	closing   chan struct{} // closed when Close begins
	closeOnce sync.Once
	wg        sync.WaitGroup // one per worker goroutine
}

type item[T any] struct {
	task   T
	weight int64
}

// worker is one goroutine's queue, a ring of items.
type worker[T, S any] struct {
	scratch  S             // owned by the worker goroutine
	notEmpty chan struct{} // cap 1; producers signal after a push
	notFull  chan struct{} // cap 1; signalled when items or bytes free up

	mu struct {
		sync.Mutex
		ring   []item[T] // fixed length QueueItems
		head   int       // index of the oldest item
		n      int       // items queued
		bytes  int64     // weight queued or running
		closed bool
	}
}

// NewWorkers starts cfg.Workers goroutines running handle. newScratch, if
// not nil, builds each worker's scratch value (called with the worker index
// before the goroutine starts); otherwise scratch starts as S's zero value.
func NewWorkers[T, S any](cfg WorkersConfig, newScratch func(worker int) S, handle Handler[T, S]) *Workers[T, S] {
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.QueueItems <= 0 {
		cfg.QueueItems = DefaultQueueItems
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = DefaultQueueBytes
	}
	p := &Workers[T, S]{
		handle:   handle,
		seed:     maphash.MakeSeed(),
		maxBytes: cfg.QueueBytes,
		workers:  make([]worker[T, S], cfg.Workers),
		closing:  make(chan struct{}),
	}
	for i := range p.workers {
		w := &p.workers[i]
		if newScratch != nil {
			w.scratch = newScratch(i)
		}
		w.notEmpty = make(chan struct{}, 1)
		w.notFull = make(chan struct{}, 1)
		w.mu.ring = make([]item[T], cfg.QueueItems)
		p.wg.Add(1)
		go p.run(w)
	}
	return p
}

// NumWorkers returns the number of worker goroutines.
func (p *Workers[T, S]) NumWorkers() int { return len(p.workers) }

// WorkerOf returns the index of the worker that runs tasks with key.
func (p *Workers[T, S]) WorkerOf(key uint64) int {
	// splitmix64's finalizer spreads sequential keys across workers.
	key ^= key >> 30
	key *= 0xbf58476d1ce4e5b9
	key ^= key >> 27
	key *= 0x94d049bb133111eb
	key ^= key >> 31
	return int(key % uint64(len(p.workers)))
}

// WorkerOfBytes returns the index of the worker that runs tasks with the
// byte-string key (for example a DID). It does not allocate or retain key.
func (p *Workers[T, S]) WorkerOfBytes(key []byte) int {
	return int(maphash.Bytes(p.seed, key) % uint64(len(p.workers)))
}

// Submit queues task on key's worker, blocking while that queue is full
// until there is room, ctx is done (returning ctx.Err()) or the pool closes
// (ErrClosed). weight is the task's size in bytes for the byte bound; it is
// held from submit until the task returns.
func (p *Workers[T, S]) Submit(ctx context.Context, key uint64, task T, weight int64) error {
	return p.enqueue(ctx, &p.workers[p.WorkerOf(key)], item[T]{task, max(weight, 0)}, true)
}

// SubmitBytes is Submit with a byte-string key.
func (p *Workers[T, S]) SubmitBytes(ctx context.Context, key []byte, task T, weight int64) error {
	return p.enqueue(ctx, &p.workers[p.WorkerOfBytes(key)], item[T]{task, max(weight, 0)}, true)
}

// SubmitTo is Submit to worker i (0 ≤ i < NumWorkers) instead of a key's
// worker, for tasks about a worker's own state (flushing its scratch before
// Close). It is ordered after everything already queued on that worker.
func (p *Workers[T, S]) SubmitTo(ctx context.Context, i int, task T, weight int64) error {
	return p.enqueue(ctx, &p.workers[i], item[T]{task, max(weight, 0)}, true)
}

// TrySubmit queues task on key's worker or returns ErrQueueFull at once.
func (p *Workers[T, S]) TrySubmit(key uint64, task T, weight int64) error {
	return p.enqueue(context.Background(), &p.workers[p.WorkerOf(key)], item[T]{task, max(weight, 0)}, false)
}

// TrySubmitBytes is TrySubmit with a byte-string key.
func (p *Workers[T, S]) TrySubmitBytes(key []byte, task T, weight int64) error {
	return p.enqueue(context.Background(), &p.workers[p.WorkerOfBytes(key)], item[T]{task, max(weight, 0)}, false)
}

// Queued returns worker i's queued task count and its queued plus running
// weight; both are stale as soon as they return.
func (p *Workers[T, S]) Queued(i int) (items int, bytes int64) {
	w := &p.workers[i]
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.n, w.mu.bytes
}

// Close stops accepting tasks, lets every worker finish the tasks already
// queued, and waits for the goroutines to exit. Submits blocked on a full
// queue return ErrClosed. Calling Close again waits again and returns nil.
func (p *Workers[T, S]) Close() error {
	p.closeOnce.Do(func() {
		close(p.closing)
		for i := range p.workers {
			w := &p.workers[i]
			w.mu.Lock()
			w.mu.closed = true
			w.mu.Unlock()
			signal(w.notEmpty)
		}
	})
	p.wg.Wait()
	return nil
}

// signal leaves a wake-up token in a capacity-1 channel without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// hasRoomLocked reports whether it fits in w now. REQUIRES: w.mu held.
func (p *Workers[T, S]) hasRoomLocked(w *worker[T, S], weight int64) bool {
	return w.mu.n < len(w.mu.ring) && (w.mu.bytes == 0 || w.mu.bytes+weight <= p.maxBytes)
}

func (p *Workers[T, S]) enqueue(ctx context.Context, w *worker[T, S], it item[T], block bool) error {
	for {
		w.mu.Lock()
		if w.mu.closed {
			w.mu.Unlock()
			return ErrClosed
		}
		if p.hasRoomLocked(w, it.weight) {
			w.mu.ring[(w.mu.head+w.mu.n)%len(w.mu.ring)] = it
			w.mu.n++
			w.mu.bytes += it.weight
			more := w.mu.n < len(w.mu.ring) && w.mu.bytes < p.maxBytes
			w.mu.Unlock()
			signal(w.notEmpty)
			if more {
				// Pass the wake-up on: another blocked producer may fit too.
				signal(w.notFull)
			}
			return nil
		}
		w.mu.Unlock()
		if !block {
			return ErrQueueFull
		}
		select {
		case <-w.notFull:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.closing:
			return ErrClosed
		}
	}
}

// run is worker w's goroutine: it pops in FIFO order until the pool is
// closed and the queue is empty.
func (p *Workers[T, S]) run(w *worker[T, S]) {
	defer p.wg.Done()
	var zero item[T]
	for {
		w.mu.Lock()
		for w.mu.n == 0 {
			if w.mu.closed {
				w.mu.Unlock()
				return
			}
			w.mu.Unlock()
			<-w.notEmpty
			w.mu.Lock()
		}
		it := w.mu.ring[w.mu.head]
		w.mu.ring[w.mu.head] = zero // drop the task's references for the GC
		w.mu.head = (w.mu.head + 1) % len(w.mu.ring)
		w.mu.n--
		w.mu.Unlock()
		signal(w.notFull)

		p.handle(&w.scratch, it.task)

		if it.weight > 0 {
			w.mu.Lock()
			w.mu.bytes -= it.weight
			w.mu.Unlock()
			signal(w.notFull)
		}
	}
}
