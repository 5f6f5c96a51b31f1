package migrate

import (
	"context"
	"fmt"

	"github.com/atrelay/relay/store"
)

// Result counts what Apply wrote.
type Result struct {
	HostsCreated, HostsUpdated int
	BansAdded                  int
	// TakedownsAdded counts accounts taken down; AccountsCreated those of
	// them the store had not seen before.
	TakedownsAdded, AccountsCreated int
	// SeqMoved is set when the next seq was moved to Plan.NextSeq.
	SeqMoved bool
}

// Apply performs p on st, in the order of the package doc: bans, hosts,
// takedowns, seq. It stops at the first error; what was written stays
// written and running Apply again (with a new plan) completes it. st must
// not be in use by a running relay. ctx is checked between writes.
func Apply(ctx context.Context, p *Plan, st *store.Store) (Result, error) {
	var r Result
	for _, d := range p.Bans {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		if err := st.BanDomain(d); err != nil {
			return r, fmt.Errorf("migrate: ban %s: %w", d, err)
		}
		r.BansAdded++
	}
	for i := range p.Hosts {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		c := &p.Hosts[i]
		if !c.Changed() {
			continue
		}
		h, ok := st.HostByName(c.Hostname)
		if !ok {
			var err error
			h, err = st.CreateHost(store.NewHost{Hostname: c.Hostname, Status: c.To.Status, Trusted: c.To.Trusted,
				AccountLimit: c.To.AccountLimit})
			if err != nil {
				return r, fmt.Errorf("migrate: create host %s: %w", c.Hostname, err)
			}
			r.HostsCreated++
		} else {
			r.HostsUpdated++
		}
		to := c.To
		if _, err := st.UpdateHost(h.ID, func(h *store.Host) {
			h.Status, h.Trusted, h.AccountLimit, h.Cursor = to.Status, to.Trusted, to.AccountLimit, to.Cursor
		}); err != nil {
			return r, fmt.Errorf("migrate: update host %s: %w", c.Hostname, err)
		}
	}
	for _, did := range p.Takedowns {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		created, err := st.ImportTakedown([]byte(did))
		if err != nil {
			return r, fmt.Errorf("migrate: take down %s: %w", did, err)
		}
		r.TakedownsAdded++
		if created {
			r.AccountsCreated++
		}
	}
	if p.NextSeq > p.CurNextSeq {
		moved, err := st.AdvanceSeq(p.NextSeq)
		if err != nil {
			return r, fmt.Errorf("migrate: next seq %d: %w", p.NextSeq, err)
		}
		r.SeqMoved = moved
	}
	return r, nil
}
