package pool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

type seqTask struct {
	key uint64
	seq int
	out *atomic.Int64 // counts handled tasks
}

type seqScratch struct {
	worker int
	last   map[uint64]int // per key, owned by the worker goroutine
	bad    *atomic.Int64
}

func seqHandler(s *seqScratch, task seqTask) {
	if prev, ok := s.last[task.key]; ok && task.seq != prev+1 {
		s.bad.Add(1)
	}
	s.last[task.key] = task.seq
	task.out.Add(1)
}

// TestWorkersOrderPerKey submits interleaved per-key sequences from many
// goroutines into small queues; each key must be handled in submission
// order, which the per-worker scratch map checks without locks.
func TestWorkersOrderPerKey(t *testing.T) {
	var bad, done atomic.Int64
	p := NewWorkers(WorkersConfig{Workers: 4, QueueItems: 8},
		func(i int) seqScratch { return seqScratch{worker: i, last: map[uint64]int{}, bad: &bad} },
		seqHandler)
	const producers, keysEach, seqs = 6, 20, 50
	var wg sync.WaitGroup
	for pr := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range seqs {
				for k := range keysEach {
					key := uint64(pr*keysEach + k)
					if err := p.Submit(context.Background(), key, seqTask{key, s, &done}, 1); err != nil {
						t.Errorf("Submit: %v", err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if done.Load() != producers*keysEach*seqs || bad.Load() != 0 {
		t.Fatalf("handled %d (want %d), out of order %d", done.Load(), producers*keysEach*seqs, bad.Load())
	}
}

func TestWorkersBytesKeysAreSticky(t *testing.T) {
	p := NewWorkers(WorkersConfig{Workers: 7}, nil, func(*struct{}, int) {})
	defer p.Close()
	did := []byte("did:plc:7iza6de2dwap2sbkpav7c6c6")
	w := p.WorkerOfBytes(did)
	for range 100 {
		if p.WorkerOfBytes(did) != w || p.WorkerOf(42) != p.WorkerOf(42) {
			t.Fatal("key moved between workers")
		}
	}
	seen := map[int]bool{}
	for k := range uint64(200) {
		seen[p.WorkerOf(k)] = true
	}
	if len(seen) != 7 {
		t.Fatalf("sequential keys reached %d of 7 workers", len(seen))
	}
}

// gated is a pool with one worker whose handler waits for the test.
type gated struct {
	p       *Workers[int, struct{}]
	started chan int
	gate    chan struct{}
}

func newGated(items int, bytes int64) *gated {
	g := &gated{started: make(chan int, 100), gate: make(chan struct{})}
	g.p = NewWorkers(WorkersConfig{Workers: 1, QueueItems: items, QueueBytes: bytes}, nil,
		func(_ *struct{}, v int) { g.started <- v; <-g.gate })
	return g
}

func TestWorkersBackPressureItems(t *testing.T) {
	g := newGated(2, 0)
	ctx := context.Background()
	for v := range 3 {
		if err := g.p.Submit(ctx, 1, v, 0); err != nil {
			t.Fatal(err)
		}
		if v == 0 {
			<-g.started // task 0 is running; 1 and 2 fill the queue
		}
	}
	if err := g.p.TrySubmit(1, 99, 0); err != ErrQueueFull {
		t.Fatalf("TrySubmit on a full queue = %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := g.p.Submit(cctx, 1, 99, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Submit on a full queue with a done context = %v", err)
	}
	// A blocked Submit resumes when the worker frees a slot.
	res := make(chan error)
	go func() { res <- g.p.Submit(ctx, 1, 3, 0) }()
	g.gate <- struct{}{} // finish task 0
	if err := <-res; err != nil {
		t.Fatalf("blocked Submit = %v", err)
	}
	for want := 1; want <= 3; want++ {
		if v := <-g.started; v != want {
			t.Fatalf("ran %d, want %d", v, want)
		}
		g.gate <- struct{}{}
	}
	g.p.Close()
}

func TestWorkersBackPressureBytes(t *testing.T) {
	g := newGated(100, 100)
	ctx := context.Background()
	if err := g.p.Submit(ctx, 1, 0, 60); err != nil {
		t.Fatal(err)
	}
	<-g.started
	if items, bytes := g.p.Queued(0); items != 0 || bytes != 60 {
		t.Fatalf("running task: queued %d items %d bytes", items, bytes)
	}
	if err := g.p.TrySubmit(1, 1, 60); err != ErrQueueFull {
		t.Fatalf("TrySubmit over the byte bound = %v", err)
	}
	if err := g.p.TrySubmit(1, 1, 40); err != nil {
		t.Fatalf("TrySubmit within the byte bound = %v", err)
	}
	res := make(chan error)
	go func() { res <- g.p.SubmitBytes(ctx, []byte("k"), 2, 60) }()
	g.gate <- struct{}{} // task 0 returns its 60 bytes; 40+60 fits
	<-g.started
	if err := <-res; err != nil {
		t.Fatalf("blocked SubmitBytes = %v", err)
	}
	g.gate <- struct{}{}
	<-g.started
	g.gate <- struct{}{}
	// A task heavier than the whole bound waits for an idle worker, then
	// runs instead of deadlocking.
	if err := g.p.Submit(ctx, 1, 3, 1000); err != nil {
		t.Fatalf("oversized task on an idle worker = %v", err)
	}
	<-g.started
	g.gate <- struct{}{}
	g.p.Close()
}

func TestWorkersCloseDrains(t *testing.T) {
	g := newGated(10, 0)
	ctx := context.Background()
	for v := range 10 {
		if err := g.p.Submit(ctx, 1, v, 0); err != nil {
			t.Fatal(err)
		}
	}
	<-g.started
	// The queue holds 9; the 10th Submit blocks and must fail on Close.
	if err := g.p.Submit(ctx, 1, 10, 0); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error)
	go func() { blocked <- g.p.Submit(ctx, 1, 11, 0) }()
	closed := make(chan error)
	go func() { closed <- g.p.Close() }()
	if err := <-blocked; err != ErrClosed {
		t.Fatalf("Submit blocked across Close = %v", err)
	}
	g.gate <- struct{}{}
	for want := 1; want <= 10; want++ {
		if v := <-g.started; v != want {
			t.Fatalf("drained %d, want %d", v, want)
		}
		g.gate <- struct{}{}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := g.p.TrySubmit(1, 0, 0); err != ErrClosed {
		t.Fatalf("TrySubmit after Close = %v", err)
	}
	if err := g.p.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

type noopTask struct{ a, b uint64 }

func TestWorkersSubmitNoAllocs(t *testing.T) {
	p := NewWorkers(WorkersConfig{Workers: 2, QueueItems: 4096}, nil, func(*struct{}, noopTask) {})
	defer p.Close()
	ctx := context.Background()
	key := []byte("did:plc:7iza6de2dwap2sbkpav7c6c6")
	n := testing.AllocsPerRun(1000, func() {
		_ = p.Submit(ctx, 7, noopTask{1, 2}, 100)
		_ = p.SubmitBytes(ctx, key, noopTask{3, 4}, 100)
	})
	if n != 0 {
		t.Fatalf("Submit: %v allocs/op, want 0", n)
	}
}

// TestWorkersSubmitTo reaches each worker by index, after the tasks already
// queued on it.
func TestWorkersSubmitTo(t *testing.T) {
	type task struct{ flush bool }
	type scratch struct {
		worker  int
		handled int
		flushed *[4]int // per worker: tasks handled before its flush
	}
	var flushed [4]int
	p := NewWorkers(WorkersConfig{Workers: 4},
		func(i int) scratch { return scratch{worker: i, flushed: &flushed} },
		func(s *scratch, tk task) {
			if tk.flush {
				s.flushed[s.worker] = s.handled + 1 // +1: mark it ran even after no task
				return
			}
			s.handled++
		})
	perWorker := [4]int{}
	for k := range uint64(100) {
		if err := p.Submit(context.Background(), k, task{}, 1); err != nil {
			t.Fatal(err)
		}
		perWorker[p.WorkerOf(k)]++
	}
	for i := range 4 {
		if err := p.SubmitTo(context.Background(), i, task{flush: true}, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if flushed[i] != perWorker[i]+1 {
			t.Errorf("worker %d flushed after %d tasks, want all %d", i, flushed[i]-1, perWorker[i])
		}
	}
	if err := p.SubmitTo(context.Background(), 0, task{}, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("SubmitTo after Close: %v", err)
	}
}
