package generate

import (
	"fmt"
	"math"

	"github.com/atrelay/relay/bench/fleet"
)

// Population configures the pre-existing account model (package doc).
// Zero fields take the defaults.
type Population struct {
	// Accounts is the number of accounts that exist before the capture
	// (0: the account-creation model; at most MaxPopulation).
	Accounts int
	// Skew is the exponent of the power law over accounts that picks each
	// action's account, P(rank k) ∝ (k+1)^-Skew (default 0.7; in (0, 4]).
	// Below 1 most accounts act; above 1 a few hundred carry the traffic.
	Skew float64
	// InitialRecords is the number of posts each repository holds before
	// the capture (default 3; 0..fleet.MaxPreexistRecords; -1 means 0).
	InitialRecords int
}

// MaxPopulation bounds Population.Accounts: account numbers fit the
// repository clock's uint and a snapshot's document count.
const MaxPopulation = 1 << 24

func (p Population) withDefaults() Population {
	if p.Skew == 0 {
		p.Skew = 0.7
	}
	switch p.InitialRecords {
	case 0:
		p.InitialRecords = 3
	case -1:
		p.InitialRecords = 0
	}
	return p
}

func (p Population) validate() error {
	switch {
	case p.Accounts < 0 || p.Accounts > MaxPopulation:
		return fmt.Errorf("%w: Population.Accounts %d not in 0..%d", ErrBadOptions, p.Accounts, MaxPopulation)
	case !(p.Skew > 0 && p.Skew <= 4):
		return fmt.Errorf("%w: Population.Skew %v not in (0, 4]", ErrBadOptions, p.Skew)
	case p.InitialRecords < 0 || p.InitialRecords > fleet.MaxPreexistRecords:
		return fmt.Errorf("%w: Population.InitialRecords %d not in 0..%d", ErrBadOptions, p.InitialRecords, fleet.MaxPreexistRecords)
	}
	return nil
}

// powerLaw maps a uniform draw u in [0, 1) onto a rank in [0, n) with
// P(rank k) ≈ (k+1)^-s: the continuous power law on [1, n+1), inverted in
// closed form. Unlike rand.Zipf it takes any s > 0 (activity spread thin
// over a million accounts needs s < 1) and keeps no state, so one value
// serves every goroutine.
type powerLaw struct {
	n    int
	s    float64
	span float64 // F⁻¹'s scale: (n+1)^(1-s) - 1, or ln(n+1) when s = 1
}

func newPowerLaw(n int, s float64) powerLaw {
	p := powerLaw{n: n, s: s}
	if s == 1 {
		p.span = math.Log(float64(n) + 1)
	} else {
		p.span = math.Pow(float64(n)+1, 1-s) - 1
	}
	return p
}

func (p powerLaw) rank(u float64) int {
	var x float64
	if p.s == 1 {
		x = math.Exp(u * p.span)
	} else {
		x = math.Pow(1+u*p.span, 1/(1-p.s))
	}
	return min(max(int(x)-1, 0), p.n-1)
}

// hashUnit returns a reproducible uniform value in [0, 1) for (seed, n):
// SplitMix64's finaliser over both, the top 53 bits as the fraction.
func hashUnit(seed, n uint64) float64 {
	z := seed ^ (n+1)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
}
