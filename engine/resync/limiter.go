package resync

import (
	"context"
	"sync"
	"time"
)

// limiter is a token bucket over fetch attempts, shared by all workers:
// at most burst back to back, then one per interval. It keeps only the
// time the next token becomes free, so any window of length W admits at
// most burst + W/interval starts. Safe for concurrent use.
type limiter struct {
	// Static after newLimiter.
	interval time.Duration
	burst    int
	now      func() time.Time

	mu   sync.Mutex
	next time.Time // guarded by mu: when the next token is free
}

func newLimiter(perSecond float64, burst int, now func() time.Time) *limiter {
	return &limiter{interval: time.Duration(float64(time.Second) / perSecond), burst: burst, now: now}
}

// reserve takes the next token and returns how long to wait before using
// it (0 when it is free now).
func (l *limiter) reserve() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	// Idle time refills at most burst tokens: the earliest slot a
	// reservation may take is burst-1 intervals in the past.
	start := l.next
	if floor := now.Add(-time.Duration(l.burst-1) * l.interval); start.Before(floor) {
		start = floor
	}
	l.next = start.Add(l.interval)
	if d := start.Sub(now); d > 0 {
		return d
	}
	return 0
}

// wait takes a token and sleeps until it is due, or returns ctx's error.
// A token given up by cancellation is not returned: Close is the only
// canceller, so nothing waits for it.
func (l *limiter) wait(ctx context.Context) error {
	return sleep(ctx, l.reserve())
}

// sleep waits d or until ctx is done, returning ctx's error then.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
