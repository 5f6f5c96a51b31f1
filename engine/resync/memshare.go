package resync

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// Errors of the memory share. Result.Err wraps them.
var (
	// ErrRepoMemory: the repository needs more than all of MemoryBytes
	// (ends as too_large, like ErrTooLarge).
	ErrRepoMemory = errors.New("resync: repository needs more memory than MemoryBytes")
	// ErrMemoryBusy: the resyncs running at once held the share and all
	// waited for more; this one gave its part back so the others can
	// finish (retried like a transport error).
	ErrMemoryBusy = errors.New("resync: memory share held by concurrent resyncs")
)

// memShare is a byte semaphore over the resync memory share
// (Config.MemoryBytes). Each worker owns one reservation and raises it
// before allocating (the body buffer as it grows, then the verifier's
// scratch) and drops it to zero when its resync is done, so the bytes the
// resyncs hold never exceed capacity. Safe for concurrent use.
//
// Growth waits in FIFO order, so a large repository is not starved by a
// stream of small ones. A reservation waits while holding what it has, so
// reservations can wait on each other: when every reservation holding
// bytes is waiting, nothing would ever be released, and the newest waiter
// that holds bytes is failed with ErrMemoryBusy and its bytes taken back
// (its fetch is retried later). The oldest waiter always fits once the
// others are gone, because no request exceeds capacity.
type memShare struct {
	// Static after newMemShare.
	capacity int64
	busy     *metrics.Counter // reservations failed with ErrMemoryBusy

	mu      sync.Mutex
	used    int64          // guarded by mu: sum of held
	peak    int64          // guarded by mu: the largest used so far
	holders int            // guarded by mu: reservations with held > 0
	waiters []*reservation // guarded by mu: FIFO of blocked growTo calls
}

// reservation is one worker's part of a memShare. One goroutine at a time
// calls its methods.
type reservation struct {
	s *memShare // static

	held  int64 // guarded by s.mu: bytes reserved
	want  int64 // guarded by s.mu: the total a blocked growTo asks for
	ready chan error
}

// newMemShare returns a share of capacity bytes (> 0) that counts the
// reservations it fails with ErrMemoryBusy in busy.
func newMemShare(capacity int64, busy *metrics.Counter) *memShare {
	return &memShare{capacity: capacity, busy: busy}
}

// reservation returns a new, empty reservation of s for one owner.
func (s *memShare) reservation() *reservation {
	return &reservation{s: s, ready: make(chan error, 1)}
}

// fits reports whether a reservation of total bytes can ever be granted.
func (s *memShare) fits(total int64) bool { return total <= s.capacity }

// stats returns the bytes reserved now and the most ever reserved at once.
func (s *memShare) stats() (used, peak int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used, s.peak
}

// growTo raises the reservation to total bytes, waiting while the share is
// short. It fails with ErrRepoMemory when total exceeds the whole share,
// ErrMemoryBusy when it was chosen to break a wait cycle (its bytes are
// then gone: held is 0), or ctx's error (held is then unchanged, or total
// if the grant raced the cancellation: the owner releases either way). A
// smaller total is a no-op.
func (r *reservation) growTo(ctx context.Context, total int64) error {
	s := r.s
	if !s.fits(total) {
		return fmt.Errorf("%w: %d bytes of %d", ErrRepoMemory, total, s.capacity)
	}
	s.mu.Lock()
	if total <= r.held {
		s.mu.Unlock()
		return nil
	}
	if len(s.waiters) == 0 && s.used+total-r.held <= s.capacity {
		s.grantLocked(r, total)
		s.mu.Unlock()
		return nil
	}
	r.want = total
	s.waiters = append(s.waiters, r)
	s.settleLocked()
	s.mu.Unlock()
	select {
	case err := <-r.ready:
		return err
	case <-ctx.Done():
	}
	s.mu.Lock()
	for i, w := range s.waiters {
		if w == r {
			s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
			s.settleLocked()
			s.mu.Unlock()
			return ctx.Err()
		}
	}
	s.mu.Unlock()
	// Granted or failed meanwhile: the answer is already in ready.
	if err := <-r.ready; err != nil {
		return err
	}
	return ctx.Err()
}

// shrinkTo lowers the reservation to total bytes (0 releases it), letting
// waiters in. A larger total is a no-op.
func (r *reservation) shrinkTo(total int64) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if total >= r.held {
		return
	}
	s.used -= r.held - total
	if total == 0 {
		s.holders--
	}
	r.held = total
	s.settleLocked()
}

// release drops the whole reservation.
func (r *reservation) release() { r.shrinkTo(0) }

// grantLocked raises r to total; the caller checked it fits.
func (s *memShare) grantLocked(r *reservation, total int64) {
	if r.held == 0 {
		s.holders++
	}
	s.used += total - r.held
	s.peak = max(s.peak, s.used)
	r.held = total
}

// settleLocked grants waiters in order while the head fits, then breaks a
// wait cycle if every holder is waiting.
func (s *memShare) settleLocked() {
	for len(s.waiters) > 0 {
		h := s.waiters[0]
		if s.used+h.want-h.held <= s.capacity {
			s.waiters = s.waiters[1:]
			s.grantLocked(h, h.want)
			h.ready <- nil
			continue
		}
		waitingHolders, victim := 0, -1
		for i, w := range s.waiters {
			if w.held > 0 {
				waitingHolders++
				victim = i
			}
		}
		if s.holders > waitingHolders {
			return // a running resync will release bytes
		}
		// The head does not fit although every holder waits, so some
		// other waiter holds bytes: victim is never the head here.
		v := s.waiters[victim]
		s.waiters = append(s.waiters[:victim], s.waiters[victim+1:]...)
		s.used -= v.held
		s.holders--
		v.held = 0
		s.busy.Inc()
		v.ready <- fmt.Errorf("%w (%d bytes reserved of %d)", ErrMemoryBusy, s.used, s.capacity)
	}
}
