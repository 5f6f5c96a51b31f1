package identity

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// plcLimiter paces every request to the PLC directory and adapts the pace
// to the directory's rate limit (additive increase, multiplicative
// decrease, as TCP does with a congested link):
//
//   - requests are sent at most rate per second, spaced 1/rate apart with
//     no burst, so a token bucket in front of the directory sees an even
//     stream rather than the relay's bursts (a cold cache, a restart);
//   - a 429 cuts rate by rateCut, at most once per round: requests already
//     sent at the old rate come back 429 too and must not cut it again, so
//     only a request sent after the last cut can cut it;
//   - a 429 also pauses every request until its Retry-After (at most
//     maxPause; 1 s when absent or unparseable), and requests waiting for
//     their turn take a new one at the cut pace;
//   - every other answer from the directory (a document, or a definitive
//     error such as 404) raises rate by increase/rate: at full pace that
//     is increase requests per second, per second, up to maxRate.
//
// Failures that are not the directory's answer (timeouts, transport
// errors, 5xx) leave the pace alone: 0.5 % of them at a few hundred
// requests a second would otherwise keep it at the floor. They feed a
// circuit breaker instead: after breakerStreak of them in a row with no
// answer for breakerAfter, the directory is taken for down and wait lets
// one request through per probeEvery (the probe), failing the others at
// once (errUnavailable) without a request. The first answer closes it.
// An outage then costs the directory one request a second, and the relay
// no resolution slots or timeouts: callers that wait it out (the relay's
// parked frames) retry cheaply, and those past their patience fail fast.
//
// Safe for concurrent use.
type plcLimiter struct {
	// Static after newPLCLimiter (tests lower the breaker's times before
	// the first request).
	maxRate, minRate       float64 // requests per second
	increase               float64 // requests per second, per second
	maxPause               time.Duration
	breakAfter, probeEvery time.Duration

	mu          sync.Mutex
	rate        float64   // guarded by mu: current pace, in [minRate, maxRate]
	next        time.Time // guarded by mu: earliest send time of the next request
	pausedUntil time.Time // guarded by mu: no request is sent before this
	round       uint64    // guarded by mu: incremented by every cut
	// The breaker, guarded by mu: transient failures since the last
	// answer, when the directory last answered (or the limiter started),
	// and while open, when the next probe may go.
	streak     int
	lastAnswer time.Time
	nextProbe  time.Time
}

// The circuit breaker's thresholds (see plcLimiter).
const (
	breakerStreak = 20
	breakerAfter  = 5 * time.Second
	probeEvery    = time.Second
)

// errUnavailable is wait's answer while the breaker is open.
var errUnavailable = errors.New("every recent PLC request failed; not sent (one probe a second until the directory answers)")

// rateCut is the factor a 429 multiplies the pace by.
const rateCut = 0.7

// defaultPause is the pause after a 429 without a usable Retry-After.
const defaultPause = time.Second

func newPLCLimiter(maxRate float64, maxPause time.Duration) *plcLimiter {
	return &plcLimiter{
		maxRate:    maxRate,
		minRate:    min(1, maxRate),
		increase:   max(1, maxRate/100),
		maxPause:   maxPause,
		breakAfter: breakerAfter,
		probeEvery: probeEvery,
		rate:       maxRate,
		// Started counts as an answer: a directory down from the start
		// opens the breaker breakerAfter later.
		lastAnswer: time.Now(),
	}
}

// wait blocks until the next request may be sent and returns the round it
// is sent in (for limited), or ctx's error, or errUnavailable at once
// while the breaker is open and it is not time for a probe.
func (l *plcLimiter) wait(ctx context.Context) (uint64, error) {
	l.mu.Lock()
	if now := time.Now(); l.openLocked(now) {
		if now.Before(l.nextProbe) {
			l.mu.Unlock()
			return 0, errUnavailable
		}
		l.nextProbe = now.Add(l.probeEvery)
	}
	l.mu.Unlock()
	for {
		l.mu.Lock()
		now := time.Now()
		at := now
		if l.next.After(at) {
			at = l.next
		}
		if l.pausedUntil.After(at) {
			at = l.pausedUntil
		}
		l.next = at.Add(time.Duration(float64(time.Second) / l.rate))
		round := l.round
		l.mu.Unlock()
		d := at.Sub(now)
		if d <= 0 {
			return round, nil
		}
		if !sleep(ctx, d) {
			return 0, ctx.Err()
		}
		// A 429 may have cut the pace or paused the directory while this
		// request waited for its turn: take a new turn then.
		l.mu.Lock()
		stale := round != l.round || time.Now().Before(l.pausedUntil)
		l.mu.Unlock()
		if !stale {
			return round, nil
		}
	}
}

// openLocked reports whether the breaker is open. l.mu held.
func (l *plcLimiter) openLocked(now time.Time) bool {
	return l.streak >= breakerStreak && now.Sub(l.lastAnswer) >= l.breakAfter
}

// unavailable reports whether the breaker is open (a gauge).
func (l *plcLimiter) unavailable() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.openLocked(time.Now())
}

// answered records an answer of the directory other than 429.
func (l *plcLimiter) answered() {
	l.mu.Lock()
	l.rate = min(l.maxRate, l.rate+l.increase/l.rate)
	l.streak, l.lastAnswer = 0, time.Now()
	l.mu.Unlock()
}

// failed records a request the directory did not answer usefully: a 5xx,
// a timeout or a transport error.
func (l *plcLimiter) failed() {
	l.mu.Lock()
	l.streak++
	l.mu.Unlock()
}

// limited records a 429 to a request sent in round, with the answer's
// Retry-After (negative: none).
func (l *plcLimiter) limited(round uint64, retryAfter time.Duration) {
	if retryAfter < 0 {
		retryAfter = defaultPause
	}
	retryAfter = min(retryAfter, l.maxPause)
	l.mu.Lock()
	now := time.Now()
	l.streak, l.lastAnswer = 0, now // a 429 is an answer: the directory is up
	if until := now.Add(retryAfter); until.After(l.pausedUntil) {
		l.pausedUntil = until
	}
	if round == l.round {
		l.rate = max(l.minRate, l.rate*rateCut)
		l.round++
		// Turns handed out at the old pace are retaken (wait), the first
		// one interval after now: at once, it would find the directory's
		// bucket as empty as the 429 did and cut again, down to the floor.
		l.next = now.Add(time.Duration(float64(time.Second) / l.rate))
	}
	l.mu.Unlock()
}

// hedgeable reports whether the directory may be sent a hedge (hedge.go):
// not while a 429 holds the pace below maxRate or pauses every request
// (a hedge would take the turn of another DID's first request at a
// directory already at its limit), nor while the breaker is open.
func (l *plcLimiter) hedgeable() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	return l.rate >= l.maxRate && !now.Before(l.pausedUntil) && !l.openLocked(now)
}

// current returns the pace, requests per second.
func (l *plcLimiter) current() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rate
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date.
// It returns -1 when the header is absent or unusable.
func retryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return -1
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return -1
		}
		return time.Duration(min(s, 1<<20)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return -1
}

// backoff is the wait before retry number attempt+1 of a failed PLC
// request: base doubled per earlier retry, capped at maxBackoff, with
// jitter in [½, 1½) so DIDs that failed together do not retry together.
func backoff(base time.Duration, attempt int) time.Duration {
	d := base
	for i := 0; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	return d/2 + rand.N(d+1)
}

// maxBackoff caps the wait between two attempts of one PLC resolution.
const maxBackoff = 8 * time.Second

// sleep waits d or until ctx ends, and reports whether the wait completed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
