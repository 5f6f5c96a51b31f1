package migrate

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/atrelay/relay/engine/atproto/syntax"
	"github.com/atrelay/relay/store"
)

// Defaults of PlanConfig.
const (
	// DefaultSeqMargin is how far above the reference's next seq this
	// relay's first seq is put: room for the events the reference still
	// sequences between Fetch and its shutdown (about three hours at
	// 1,000 events/s). A gap in seqs costs consumers nothing; a margin too
	// small would give events here seqs consumers already hold.
	DefaultSeqMargin = 10_000_000
	// DefaultAccountLimit is the reference's RELAY_DEFAULT_ACCOUNT_LIMIT
	// default, used for hosts whose limit pds/list did not report.
	DefaultAccountLimit = 100
)

// DefaultTrustedDomains is the reference's RELAY_TRUSTED_DOMAINS default.
var DefaultTrustedDomains = []string{"*.host.bsky.network"}

// PlanConfig tunes NewPlan. Zero fields take the documented defaults.
type PlanConfig struct {
	// TrustedDomains are the reference's RELAY_TRUSTED_DOMAINS patterns
	// (an exact name, or "*" followed by a suffix): a host matching one
	// is imported trusted. Nil means DefaultTrustedDomains; an empty,
	// non-nil slice trusts none.
	TrustedDomains []string
	// DefaultAccountLimit is the limit of hosts pds/list did not report.
	DefaultAccountLimit uint64
	// SeqMargin is added to the reference's next seq to give this
	// relay's; default DefaultSeqMargin.
	SeqMargin uint64
	// NextSeq, if non-zero, replaces the reference's next seq read from
	// its metrics (Source.NextSeq).
	NextSeq uint64
}

// HostState is what a host's record will say after the migration.
type HostState struct {
	Status       store.HostStatus
	Trusted      bool
	AccountLimit uint64
	Cursor       uint64
}

// HostChange is one host's part of the plan.
type HostChange struct {
	Hostname string
	// Exists is set when the store already has the host; From is then
	// its current state.
	Exists bool
	From   HostState
	To     HostState
}

// Changed reports whether applying the change writes anything.
func (c *HostChange) Changed() bool { return !c.Exists || c.From != c.To }

// Plan is every write Apply will make, decided by NewPlan.
type Plan struct {
	Hosts []HostChange
	// Bans are the domain bans to add (those not banned here yet).
	Bans []string
	// Takedowns are the DIDs to take down (those not taken down here yet).
	Takedowns []string
	// RefNextSeq is the seq the reference's next event gets.
	RefNextSeq uint64
	// NextSeq is this relay's next seq after Apply; CurNextSeq the one
	// before. Apply moves it only when NextSeq > CurNextSeq.
	NextSeq, CurNextSeq store.Seq
	// Warnings are what the operator should read before applying.
	Warnings []string
	// Skipped counts source entries left out (each has a warning).
	Skipped int
}

// Errors of NewPlan.
var (
	// ErrNoNextSeq: neither the reference's metrics nor PlanConfig gave
	// its next seq, so no safe first seq can be chosen.
	ErrNoNextSeq = fmt.Errorf("migrate: the reference relay's next seq is unknown (read its metrics or pass it)")
	// ErrSeqRange: the chosen seq is beyond store.MaxSeq.
	ErrSeqRange = fmt.Errorf("migrate: next seq beyond the store's maximum")
)

// trustedName applies the reference's trusted-domain rule: an exact
// name, or a "*"-prefixed pattern whose rest is a suffix of the name.
func trustedName(hostname string, patterns []string) bool {
	for _, p := range patterns {
		if hostname == p {
			return true
		}
		if rest, ok := strings.CutPrefix(p, "*"); ok && rest != "" && strings.HasSuffix(hostname, rest) {
			return true
		}
	}
	return false
}

// NewPlan decides the writes that bring st to src. st may be nil: a
// database that does not exist yet (the dry run does not create it).
func NewPlan(src *Source, st *store.Store, cfg PlanConfig) (*Plan, error) {
	if cfg.TrustedDomains == nil {
		cfg.TrustedDomains = DefaultTrustedDomains
	}
	if cfg.DefaultAccountLimit == 0 {
		cfg.DefaultAccountLimit = DefaultAccountLimit
	}
	if cfg.SeqMargin == 0 {
		cfg.SeqMargin = DefaultSeqMargin
	}
	p := &Plan{RefNextSeq: src.NextSeq, CurNextSeq: 1}
	if cfg.NextSeq != 0 {
		p.RefNextSeq = cfg.NextSeq
	}
	if p.RefNextSeq == 0 {
		return nil, ErrNoNextSeq
	}
	if st != nil {
		p.CurNextSeq = st.NewestSeq() + 1
	}
	next := p.RefNextSeq + cfg.SeqMargin
	if next > uint64(store.MaxSeq) || next < p.RefNextSeq {
		return nil, fmt.Errorf("%w: %d + margin %d", ErrSeqRange, p.RefNextSeq, cfg.SeqMargin)
	}
	p.NextSeq = max(store.Seq(next), p.CurNextSeq)

	if src.ListTruncated {
		p.warn("the reference listed its 10,000-host maximum in pds/list: hosts past it that never delivered an event are not imported, and those that did get account limit %d", cfg.DefaultAccountLimit)
	}
	seen := map[string]bool{}
	for _, h := range src.Hosts {
		p.planHost(h, st, cfg, seen)
	}
	var banned map[string]bool
	if st != nil {
		banned = map[string]bool{}
		for _, d := range st.Bans() {
			banned[d] = true
		}
	}
	for _, d := range src.DomainBans {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "" || len(d) > store.MaxDomainBytes:
			p.skip("domain ban %q is not a domain", d)
		case !banned[d] && !slices.Contains(p.Bans, d):
			p.Bans = append(p.Bans, d)
		}
	}
	var acct store.Account
	for _, did := range src.Takedowns {
		if syntax.CheckDID([]byte(did)) != nil {
			p.skip("takedown of %q: not a DID", did)
			continue
		}
		if st != nil {
			found, err := st.GetAccount([]byte(did), &acct)
			if err != nil {
				return nil, fmt.Errorf("migrate: reading account %s: %w", did, err)
			}
			if found && acct.LocalStatus == store.LocalTakendown {
				continue
			}
		}
		p.Takedowns = append(p.Takedowns, did)
	}
	return p, nil
}

func (p *Plan) warn(format string, args ...any) {
	p.Warnings = append(p.Warnings, fmt.Sprintf(format, args...))
}

func (p *Plan) skip(format string, args ...any) {
	p.Skipped++
	p.warn("skipped: "+format, args...)
}

// planHost adds one source host to the plan.
func (p *Plan) planHost(h SourceHost, st *store.Store, cfg PlanConfig, seen map[string]bool) {
	name, err := syntax.NormalizeHost(h.Hostname, true)
	if err != nil {
		p.skip("host %q: %v", h.Hostname, err)
		return
	}
	if seen[name] {
		return
	}
	seen[name] = true
	status, ok := store.ParseHostStatus(h.Status)
	if !ok {
		p.warn("host %s has status %q, unknown here: imported idle", name, h.Status)
		status = store.HostIdle
	}
	to := HostState{Status: status, Trusted: trustedName(name, cfg.TrustedDomains), AccountLimit: cfg.DefaultAccountLimit}
	if h.AccountLimit >= 0 {
		to.AccountLimit = uint64(h.AccountLimit)
	}
	if h.Cursor > 0 {
		to.Cursor = uint64(h.Cursor)
	}
	// A development host is one the normalizer accepts only with the switch.
	_, prodErr := syntax.NormalizeHost(name, false)
	isDev := prodErr != nil
	if !h.SSL && !isDev {
		p.warn("host %s is read without TLS by the reference; this relay reads it over wss://", name)
	}
	if isDev {
		p.warn("host %s is a development host: this relay reads it only with RELAY_ALLOW_INSECURE_HOSTS set", name)
	}
	c := HostChange{Hostname: name, To: to}
	if st != nil {
		if cur, ok := st.HostByName(name); ok {
			c.Exists = true
			c.From = HostState{Status: cur.Status, Trusted: cur.Trusted, AccountLimit: cur.AccountLimit, Cursor: cur.Cursor}
		}
	}
	p.Hosts = append(p.Hosts, c)
}

// Print writes the plan for the operator: a summary, the warnings, then
// one line per write.
func (p *Plan) Print(w io.Writer) error {
	var creates, updates, same, active int
	for i := range p.Hosts {
		c := &p.Hosts[i]
		switch {
		case !c.Exists:
			creates++
		case c.Changed():
			updates++
		default:
			same++
		}
		if c.To.Status == store.HostActive {
			active++
		}
	}
	bw := &errWriter{w: w}
	bw.printf("reference relay: next seq %d\n", p.RefNextSeq)
	if p.NextSeq > p.CurNextSeq {
		bw.printf("this relay:      next seq %d -> %d (consumer cursors up to %d stay valid)\n", p.CurNextSeq, p.NextSeq, p.NextSeq-1)
	} else {
		bw.printf("this relay:      next seq %d (already above the reference's)\n", p.CurNextSeq)
	}
	bw.printf("hosts:           %d to create, %d to update, %d unchanged; %d active (subscribed at start)\n",
		creates, updates, same, active)
	bw.printf("domain bans:     %d to add\n", len(p.Bans))
	bw.printf("takedowns:       %d to add\n", len(p.Takedowns))
	for _, m := range p.Warnings {
		bw.printf("warning: %s\n", m)
	}
	for i := range p.Hosts {
		c := &p.Hosts[i]
		switch {
		case !c.Exists:
			bw.printf("create host %s %s\n", c.Hostname, c.To)
		case c.Changed():
			bw.printf("update host %s %s (was %s)\n", c.Hostname, c.To, c.From)
		}
	}
	for _, d := range p.Bans {
		bw.printf("ban domain %s\n", d)
	}
	for _, d := range p.Takedowns {
		bw.printf("take down %s\n", d)
	}
	return bw.err
}

// String formats a host state for Print.
func (s HostState) String() string {
	return fmt.Sprintf("status=%s trusted=%v account-limit=%d cursor=%d", s.Status, s.Trusted, s.AccountLimit, s.Cursor)
}

// errWriter keeps the first write error so Print can report it once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
