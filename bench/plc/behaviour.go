package plc

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// z99 is the standard normal quantile at 0.99: a lognormal's p99 is
// exp(μ + z99·σ) where its p50 is exp(μ).
const z99 = 2.3263478740408408

// maxDelayFactor caps a sampled delay at this many times LatencyP99, so a
// configuration with a very wide spread cannot draw an hour-long wait; the
// cap sits far beyond the p99 (above 5σ for p50 80 ms, p99 400 ms).
const maxDelayFactor = 10

// ErrBadBehaviour: a Behaviour field is out of range; the error names it.
var ErrBadBehaviour = errors.New("plc: bad behaviour")

// Behaviour is how the directory answers, modelled on the real one under
// load: it is slow (a lognormal latency), fails a small share of requests
// with 500, never answers another share, and rate-limits. The zero value
// answers every request at once. Latency applies to answers that are
// served or failed; a request over the rate limit gets its 429 at once,
// as from a limiter in front of the service.
type Behaviour struct {
	// LatencyP50 and LatencyP99 shape a lognormal delay before each
	// answer: the median is LatencyP50 and 1 % of requests wait longer
	// than LatencyP99 (capped at 10 × LatencyP99). LatencyP99 equal to
	// LatencyP50, or zero, means a fixed LatencyP50. Both zero: no delay.
	LatencyP50, LatencyP99 time.Duration
	// ErrorRate is the share of requests answered 500 (after the delay),
	// in [0, 1].
	ErrorRate float64
	// TimeoutRate is the share of requests never answered: the request is
	// held until the client gives up or the server closes. In [0, 1].
	TimeoutRate float64
	// RatePerSecond is the sustained request rate the directory accepts
	// (a token bucket); beyond it a request is answered 429 with
	// Retry-After: 1. Zero: no limit.
	RatePerSecond float64
	// Burst is the bucket's size; zero means one second's worth of
	// RatePerSecond (at least 1).
	Burst int
}

// Validate reports every out-of-range field at once.
func (b Behaviour) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrBadBehaviour}, args...)...))
	}
	if b.LatencyP50 < 0 || b.LatencyP99 < 0 {
		bad("negative latency %v, %v", b.LatencyP50, b.LatencyP99)
	}
	if b.LatencyP99 != 0 && b.LatencyP99 < b.LatencyP50 {
		bad("LatencyP99 %v below LatencyP50 %v", b.LatencyP99, b.LatencyP50)
	}
	if b.LatencyP99 > 0 && b.LatencyP50 == 0 {
		bad("LatencyP99 %v without LatencyP50", b.LatencyP99)
	}
	if !(b.ErrorRate >= 0 && b.ErrorRate <= 1) || !(b.TimeoutRate >= 0 && b.TimeoutRate <= 1) || b.ErrorRate+b.TimeoutRate > 1 {
		bad("ErrorRate %g and TimeoutRate %g: each in [0, 1], together at most 1", b.ErrorRate, b.TimeoutRate)
	}
	if !(b.RatePerSecond >= 0) || math.IsInf(b.RatePerSecond, 0) || b.Burst < 0 {
		bad("RatePerSecond %g and Burst %d must be finite and not negative", b.RatePerSecond, b.Burst)
	}
	return errors.Join(errs...)
}

// String is the behaviour in the flag syntax of Flags ("" for the zero value).
func (b Behaviour) String() string {
	var parts []string
	if b.LatencyP50 > 0 {
		parts = append(parts, fmt.Sprintf("latency %v,%v", b.LatencyP50, max(b.LatencyP99, b.LatencyP50)))
	}
	if b.ErrorRate > 0 {
		parts = append(parts, fmt.Sprintf("errors %g", b.ErrorRate))
	}
	if b.TimeoutRate > 0 {
		parts = append(parts, fmt.Sprintf("timeouts %g", b.TimeoutRate))
	}
	if b.RatePerSecond > 0 {
		parts = append(parts, fmt.Sprintf("rate %g/s burst %d", b.RatePerSecond, b.burst()))
	}
	return strings.Join(parts, ", ")
}

// burst is the bucket size in requests.
func (b Behaviour) burst() int {
	if b.Burst > 0 {
		return b.Burst
	}
	return max(1, int(math.Ceil(b.RatePerSecond)))
}

// delay draws one answer delay. REQUIRES: b validated.
func (b Behaviour) delay(rng *rand.Rand) time.Duration {
	if b.LatencyP50 <= 0 {
		return 0
	}
	if b.LatencyP99 <= b.LatencyP50 {
		return b.LatencyP50
	}
	sigma := math.Log(float64(b.LatencyP99)/float64(b.LatencyP50)) / z99
	d := float64(b.LatencyP50) * math.Exp(sigma*rng.NormFloat64())
	return time.Duration(min(d, maxDelayFactor*float64(b.LatencyP99)))
}

// bucket is a token bucket; guarded by the Server's mutex.
type bucket struct {
	tokens float64
	last   time.Time // zero: full
}

// take spends one token if there is one, refilling at rate up to burst.
func (k *bucket) take(now time.Time, rate float64, burst int) bool {
	if k.last.IsZero() {
		k.tokens = float64(burst)
	} else if dt := now.Sub(k.last); dt > 0 {
		k.tokens = min(float64(burst), k.tokens+dt.Seconds()*rate)
	}
	k.last = now
	if k.tokens < 1 {
		return false
	}
	k.tokens--
	return true
}

// Flags defines the behaviour flags on fs, for the tools that start a
// fake PLC (relay bench, relay replay):
//
//	--plc-latency P50,P99   lognormal answer delay, e.g. 80ms,400ms (one value: fixed)
//	--plc-errors P          share of requests answered 500, e.g. 0.005
//	--plc-timeouts P        share of requests never answered, e.g. 0.005
//	--plc-rate N            requests per second accepted (token bucket, 429 beyond)
//	--plc-burst N           bucket size (default one second's worth)
//
// The returned function parses and validates them once fs.Parse has run.
func Flags(fs *flag.FlagSet) func() (Behaviour, error) {
	latency := fs.String("plc-latency", "", "fake PLC answer delay: lognormal `P50,P99` such as 80ms,400ms (one value: fixed; empty: none)")
	errRate := fs.Float64("plc-errors", 0, "fake PLC: share of requests answered HTTP 500, e.g. 0.005")
	toRate := fs.Float64("plc-timeouts", 0, "fake PLC: share of requests never answered (held until the client gives up), e.g. 0.005")
	rate := fs.Float64("plc-rate", 0, "fake PLC: requests per second accepted, HTTP 429 beyond (0: no limit)")
	burst := fs.Int("plc-burst", 0, "fake PLC: rate-limit burst in requests (0: one second of --plc-rate)")
	return func() (Behaviour, error) {
		b := Behaviour{ErrorRate: *errRate, TimeoutRate: *toRate, RatePerSecond: *rate, Burst: *burst}
		if *latency != "" {
			p50, p99, two := strings.Cut(*latency, ",")
			var err error
			if b.LatencyP50, err = time.ParseDuration(strings.TrimSpace(p50)); err != nil {
				return Behaviour{}, fmt.Errorf("%w: --plc-latency %q: %v", ErrBadBehaviour, *latency, err)
			}
			b.LatencyP99 = b.LatencyP50
			if two {
				if b.LatencyP99, err = time.ParseDuration(strings.TrimSpace(p99)); err != nil {
					return Behaviour{}, fmt.Errorf("%w: --plc-latency %q: %v", ErrBadBehaviour, *latency, err)
				}
			}
		}
		return b, b.Validate()
	}
}
