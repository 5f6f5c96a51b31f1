package relay

import "sync"

// byteBudget bounds the bytes of output frames waiting between the workers
// and the sequencer (the results channel is bounded by items too). acquire
// blocks while the budget is used up; one frame larger than the whole
// budget still passes when nothing else is held, so nothing deadlocks.
// Every field is guarded by mu.
type byteBudget struct {
	mu   sync.Mutex
	cond sync.Cond
	used int64
	max  int64
}

func (b *byteBudget) init(max int64) {
	b.max = max
	b.cond.L = &b.mu
}

func (b *byteBudget) acquire(n int64) {
	b.mu.Lock()
	for b.used > 0 && b.used+n > b.max {
		b.cond.Wait()
	}
	b.used += n
	b.mu.Unlock()
}

func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// inUse returns the bytes held now.
func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
