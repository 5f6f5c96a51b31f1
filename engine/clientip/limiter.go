package clientip

import (
	"net/netip"
	"sync"
	"time"
)

// Limiter is a token bucket per client key in a table of at most
// MaxClients entries. Safe for concurrent use.
//
// A full table first forgets the clients whose buckets have refilled
// (they are indistinguishable from new ones); if that frees less than a
// quarter of it, it forgets arbitrary clients until it does. Forgetting
// hands a client a full bucket, so the table bounds memory, not the total
// rate of a party with more addresses than MaxClients: limits that must
// hold against that (the new-host budget, probe concurrency) are global.
type Limiter struct {
	// Static after NewLimiter.
	perSec float64
	burst  float64
	max    int

	mu      sync.Mutex
	buckets map[netip.Addr]bucket // guarded by mu
}

// bucket is one client's tokens as of at.
type bucket struct {
	tokens float64
	at     time.Time
}

// NewLimiter returns a limiter granting each client perMinute requests a
// minute with bursts of burst, remembering at most maxClients clients.
// Non-positive arguments are raised to 1.
func NewLimiter(perMinute float64, burst, maxClients int) *Limiter {
	return &Limiter{
		perSec:  max(perMinute, 1e-9) / 60,
		burst:   float64(max(burst, 1)),
		max:     max(maxClients, 1),
		buckets: make(map[netip.Addr]bucket),
	}
}

// Allow takes one token from key's bucket at time now and reports whether
// there was one.
func (l *Limiter) Allow(key netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if ok {
		b.tokens = l.refill(b, now)
	} else {
		if len(l.buckets) >= l.max {
			l.shrinkLocked(now)
		}
		b.tokens = l.burst
	}
	b.at = now
	allowed := b.tokens >= 1
	if allowed {
		b.tokens--
	}
	l.buckets[key] = b
	return allowed
}

// Len returns the number of clients remembered.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

func (l *Limiter) refill(b bucket, now time.Time) float64 {
	if d := now.Sub(b.at).Seconds(); d > 0 {
		return min(l.burst, b.tokens+d*l.perSec)
	}
	return b.tokens
}

// shrinkLocked frees at least a quarter of the table (see Limiter).
// REQUIRES: l.mu held.
func (l *Limiter) shrinkLocked(now time.Time) {
	for k, b := range l.buckets {
		if l.refill(b, now) >= l.burst {
			delete(l.buckets, k)
		}
	}
	target := l.max - max(l.max/4, 1)
	for k := range l.buckets {
		if len(l.buckets) <= target {
			break
		}
		delete(l.buckets, k)
	}
}
