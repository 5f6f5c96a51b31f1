package resync

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/engine/atproto/car"
)

// waitWaiters blocks until s has n blocked growTo calls. The goroutines
// under test park in growTo; there is no event to wait on but the queue.
func waitWaiters(s *memShare, n int) {
	for {
		s.mu.Lock()
		k := len(s.waiters)
		s.mu.Unlock()
		if k == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// growAsync runs growTo on its own goroutine and returns its result.
func growAsync(ctx context.Context, r *reservation, total int64) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- r.growTo(ctx, total) }()
	return ch
}

func TestMemShare(t *testing.T) {
	ctx := context.Background()
	newShare := func() (*memShare, *metrics.Counter) {
		busy := metrics.NewSet().NewCounter("busy")
		return newMemShare(100, busy), busy
	}
	check := func(s *memShare, want int64) {
		t.Helper()
		if used, peak := s.stats(); used != want || peak > s.capacity {
			t.Fatalf("used %d peak %d, want used %d, peak ≤ %d", used, peak, want, s.capacity)
		}
	}

	t.Run("beyond-capacity", func(t *testing.T) {
		s, _ := newShare()
		if err := s.reservation().growTo(ctx, 101); !errors.Is(err, ErrRepoMemory) {
			t.Fatalf("growTo(101) of 100: %v", err)
		}
		check(s, 0)
	})

	// A small request that would fit waits behind a larger one (no
	// starvation of large repositories); both are served as bytes free up.
	t.Run("fifo", func(t *testing.T) {
		s, _ := newShare()
		a, b, c := s.reservation(), s.reservation(), s.reservation()
		if err := a.growTo(ctx, 90); err != nil {
			t.Fatal(err)
		}
		bDone := growAsync(ctx, b, 50)
		waitWaiters(s, 1)
		cDone := growAsync(ctx, c, 5)
		waitWaiters(s, 2)
		a.shrinkTo(40)
		if err := <-bDone; err != nil {
			t.Fatal(err)
		}
		if err := <-cDone; err != nil {
			t.Fatal(err)
		}
		check(s, 95)
		a.release()
		b.release()
		c.release()
		check(s, 0)
	})

	// Two holders each waiting for the other: the newest gives its bytes
	// back (ErrMemoryBusy) and the oldest proceeds.
	t.Run("wait-cycle", func(t *testing.T) {
		s, busy := newShare()
		a, b := s.reservation(), s.reservation()
		if err := a.growTo(ctx, 60); err != nil {
			t.Fatal(err)
		}
		if err := b.growTo(ctx, 30); err != nil {
			t.Fatal(err)
		}
		bDone := growAsync(ctx, b, 60)
		waitWaiters(s, 1)
		aDone := growAsync(ctx, a, 90)
		if err := <-aDone; !errors.Is(err, ErrMemoryBusy) {
			t.Fatalf("newest waiter: %v, want ErrMemoryBusy", err)
		}
		if err := <-bDone; err != nil {
			t.Fatalf("oldest waiter: %v", err)
		}
		check(s, 60)
		if busy.Get() != 1 {
			t.Fatalf("busy counter %d", busy.Get())
		}
		a.release() // holds nothing after ErrMemoryBusy: a no-op
		b.release()
		check(s, 0)
	})

	// A canceled wait leaves the queue and lets the next one in.
	t.Run("cancel", func(t *testing.T) {
		s, _ := newShare()
		a, b, c := s.reservation(), s.reservation(), s.reservation()
		if err := a.growTo(ctx, 50); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		bDone := growAsync(cctx, b, 80)
		waitWaiters(s, 1)
		cDone := growAsync(ctx, c, 40)
		waitWaiters(s, 2)
		cancel()
		if err := <-bDone; !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled wait: %v", err)
		}
		if err := <-cDone; err != nil {
			t.Fatal(err)
		}
		b.release()
		check(s, 90)
	})
}

// TestCarBlocks: the pre-count matches what the CAR reader parses, and
// malformed input counts only what precedes the damage.
func TestCarBlocks(t *testing.T) {
	tr := buildRepo(t, did(1), newKey(t, 3), posts(50), time.Now())
	var rd car.Reader
	if err := rd.Reset(tr.car, car.Options{}); err != nil {
		t.Fatal(err)
	}
	if n := carBlocks(tr.car); n != len(rd.Blocks) {
		t.Fatalf("carBlocks %d, reader %d", n, len(rd.Blocks))
	}
	if n := carBlocks(tr.car[:len(tr.car)-1]); n != len(rd.Blocks)-1 {
		t.Fatalf("truncated: %d, want %d", n, len(rd.Blocks)-1)
	}
	for _, b := range [][]byte{nil, {0x80}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, {5, 1, 2}} {
		if n := carBlocks(b); n != 0 {
			t.Fatalf("carBlocks(%x) = %d", b, n)
		}
	}
}

// TestReadGuardPause: windows spent waiting for the memory share do not
// count as a stalled body; stalled windows otherwise cancel.
func TestReadGuardPause(t *testing.T) {
	const window = 200 * time.Millisecond
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	g := startReadGuard(window, 1<<20, cancel)
	g.pause()
	time.Sleep(3 * window)
	g.resume()
	g.stop()
	if ctx.Err() != nil {
		t.Fatalf("canceled while waiting for memory: %v", context.Cause(ctx))
	}

	ctx2, cancel2 := context.WithCancelCause(context.Background())
	defer cancel2(nil)
	g2 := startReadGuard(window, 1<<20, cancel2)
	defer g2.stop()
	g2.add(100)
	<-ctx2.Done()
	if !errors.Is(context.Cause(ctx2), ErrSlowBody) {
		t.Fatalf("stalled body: cause %v", context.Cause(ctx2))
	}
}
