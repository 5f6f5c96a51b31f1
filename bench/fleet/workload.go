package fleet

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
)

// ErrBadWorkload: a Workload field is out of range; the error names it.
var ErrBadWorkload = errors.New("fleet: bad workload")

// Workload is the traffic model shared by the live fleet and the offline
// generator (bench/generate). Zero fields take the defaults of
// WithDefaults; shares are probabilities per planned action.
type Workload struct {
	// Hosts is the number of PDS hosts (default 100).
	Hosts int
	// AccountsPerHost is K, the accounts each host starts with (default 10).
	AccountsPerHost int
	// Curve is the signing curve of every account (default secp256k1).
	Curve atcrypto.Curve
	// EventsPerSecond is the total planned action rate over all hosts
	// (default 1,000); an action is one write commit or one status change.
	EventsPerSecond float64
	// HostSkew is the Zipf exponent over hosts (default 1.3, must be > 1):
	// host 0 carries the most traffic and most hosts are nearly idle.
	HostSkew float64
	// AccountSkew is the Zipf exponent over a host's accounts (default 1.2, > 1).
	AccountSkew float64
	// MaxOpsPerCommit bounds the ops of one write commit (default 5, ≤ 200).
	MaxOpsPerCommit int
	// MultiOpShare is the share of write commits with 2..MaxOpsPerCommit ops
	// (default 0.08, the reference PDS capture has 8%).
	MultiOpShare float64
	// CreateShare, UpdateShare and DeleteShare weigh the op actions
	// (defaults 0.76, 0.12, 0.12 as in the realpds-2 capture). An update or
	// delete on an empty repo becomes a create.
	CreateShare, UpdateShare, DeleteShare float64
	// RecordBytesMin and RecordBytesMax bound a record's text payload
	// (defaults 40 and 600 bytes; at most 900,000).
	RecordBytesMin, RecordBytesMax int
	// IdentityShare is the share of actions that change a handle (#identity).
	IdentityShare float64
	// DeactivateShare is the share that deactivates an account (#account);
	// the account's next action reactivates it (#account, #identity, #sync).
	DeactivateShare float64
	// DeleteAccountShare is the share that deletes an account for good.
	DeleteAccountShare float64
	// SyncShare is the share that announces the current state (#sync).
	SyncShare float64
	// Seed makes the plan, DIDs, handles and keys reproducible.
	Seed uint64
	// Start is the synthetic time of the first action (default now).
	Start time.Time
}

// WithDefaults returns w with every zero field set to its default.
func (w Workload) WithDefaults() Workload {
	def := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}
	if w.Hosts == 0 {
		w.Hosts = 100
	}
	if w.AccountsPerHost == 0 {
		w.AccountsPerHost = 10
	}
	if w.Curve == atcrypto.CurveNone {
		w.Curve = atcrypto.K256
	}
	def(&w.EventsPerSecond, 1000)
	def(&w.HostSkew, 1.3)
	def(&w.AccountSkew, 1.2)
	if w.MaxOpsPerCommit == 0 {
		w.MaxOpsPerCommit = 5
	}
	def(&w.MultiOpShare, 0.08)
	if w.CreateShare == 0 && w.UpdateShare == 0 && w.DeleteShare == 0 {
		w.CreateShare, w.UpdateShare, w.DeleteShare = 0.76, 0.12, 0.12
	}
	if w.RecordBytesMin == 0 {
		w.RecordBytesMin = 40
	}
	if w.RecordBytesMax == 0 {
		w.RecordBytesMax = 600
	}
	def(&w.IdentityShare, 0.04)
	def(&w.DeactivateShare, 0.02)
	def(&w.DeleteAccountShare, 0.001)
	def(&w.SyncShare, 0.01)
	if w.Start.IsZero() {
		w.Start = time.Now().UTC()
	}
	return w
}

// Validate reports every out-of-range field of w (after WithDefaults) in
// one error wrapping ErrBadWorkload.
func (w Workload) Validate() error {
	var bad []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			bad = append(bad, fmt.Errorf(format, args...))
		}
	}
	check(w.Hosts >= 1 && w.Hosts <= 65536, "Hosts %d not in 1..65536", w.Hosts)
	check(w.AccountsPerHost >= 0 && w.AccountsPerHost <= 1<<20, "AccountsPerHost %d not in 0..1048576", w.AccountsPerHost)
	check(w.Curve == atcrypto.K256 || w.Curve == atcrypto.P256, "Curve %v", w.Curve)
	check(w.EventsPerSecond > 0 && !math.IsInf(w.EventsPerSecond, 0), "EventsPerSecond %v", w.EventsPerSecond)
	check(w.HostSkew > 1, "HostSkew %v must be > 1", w.HostSkew)
	check(w.AccountSkew > 1, "AccountSkew %v must be > 1", w.AccountSkew)
	check(w.MaxOpsPerCommit >= 1 && w.MaxOpsPerCommit <= 200, "MaxOpsPerCommit %d not in 1..200", w.MaxOpsPerCommit)
	share := func(name string, v float64) { check(v >= 0 && v <= 1, "%s %v not in [0,1]", name, v) }
	share("MultiOpShare", w.MultiOpShare)
	share("CreateShare", w.CreateShare)
	share("UpdateShare", w.UpdateShare)
	share("DeleteShare", w.DeleteShare)
	check(w.CreateShare > 0, "CreateShare must be > 0")
	share("IdentityShare", w.IdentityShare)
	share("DeactivateShare", w.DeactivateShare)
	share("DeleteAccountShare", w.DeleteAccountShare)
	share("SyncShare", w.SyncShare)
	check(w.IdentityShare+w.DeactivateShare+w.DeleteAccountShare+w.SyncShare < 1, "status shares sum to ≥ 1")
	check(w.RecordBytesMin >= 1 && w.RecordBytesMin <= w.RecordBytesMax && w.RecordBytesMax <= 900_000,
		"RecordBytes %d..%d not within 1..900000", w.RecordBytesMin, w.RecordBytesMax)
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrBadWorkload, errors.Join(bad...))
}

// ActionKind is what one planned action does to an account.
type ActionKind uint8

// The action kinds. Write is by far the most common.
const (
	ActWrite         ActionKind = iota + 1 // one #commit with 1..N ops
	ActHandle                              // handle change: #identity
	ActDeactivate                          // #account active:false deactivated
	ActDeleteAccount                       // #account active:false deleted
	ActSync                                // #sync with the current rev
)

// String names the kind for logs and test failures.
func (k ActionKind) String() string {
	switch k {
	case ActWrite:
		return "write"
	case ActHandle:
		return "handle"
	case ActDeactivate:
		return "deactivate"
	case ActDeleteAccount:
		return "delete-account"
	case ActSync:
		return "sync"
	}
	return "unknown"
}

// Action is one planned step: which account of which host does what, when.
type Action struct {
	Host int // host index
	// Rank is the account's Zipf rank within its host; the executor maps it
	// onto the host's current accounts (modulo their count).
	Rank int
	Kind ActionKind
	// Time is the synthetic time of the action at the workload's rate.
	Time time.Time
}

// Planner draws actions from a Workload: Zipf over hosts, Zipf over a
// host's accounts, the status shares, and evenly spaced synthetic times.
// It only decides who and what; the account executes the details with its
// own random source, so a plan is cheap and reproducible. Single goroutine.
type Planner struct {
	// All fields are owned by the goroutine calling Next.
	w     Workload
	rng   *rand.Rand
	hosts *rand.Zipf
	accts *rand.Zipf
	n     int64 // actions planned so far
	step  float64
}

// NewPlanner returns a planner for w (defaults applied, then validated).
func NewPlanner(w Workload) (*Planner, error) {
	w = w.WithDefaults()
	if err := w.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(w.Seed, 0x706c616e))
	p := &Planner{w: w, rng: rng, step: float64(time.Second) / w.EventsPerSecond}
	p.hosts = rand.NewZipf(rng, w.HostSkew, 1, uint64(w.Hosts-1))
	maxRank := max(w.AccountsPerHost, 1) * 4 // migrations may grow a host
	p.accts = rand.NewZipf(rng, w.AccountSkew, 1, uint64(maxRank-1))
	return p, nil
}

// Workload returns the planner's workload with defaults applied.
func (p *Planner) Workload() Workload { return p.w }

// Next plans the next action.
func (p *Planner) Next() Action {
	a := Action{
		Host: int(p.hosts.Uint64()),
		Rank: int(p.accts.Uint64()),
		Time: p.w.Start.Add(time.Duration(float64(p.n) * p.step)),
	}
	p.n++
	x := p.rng.Float64()
	switch {
	case x < p.w.IdentityShare:
		a.Kind = ActHandle
	case x < p.w.IdentityShare+p.w.DeactivateShare:
		a.Kind = ActDeactivate
	case x < p.w.IdentityShare+p.w.DeactivateShare+p.w.DeleteAccountShare:
		a.Kind = ActDeleteAccount
	case x < p.w.IdentityShare+p.w.DeactivateShare+p.w.DeleteAccountShare+p.w.SyncShare:
		a.Kind = ActSync
	default:
		a.Kind = ActWrite
	}
	return a
}
