package verify

import (
	"context"
	"fmt"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/store"
)

// AccountState is the relay's stored state of one account (spec §12.1),
// read by the validator and never modified by it. The caller owns it; its
// slices must stay unchanged during a call.
type AccountState struct {
	// Known reports that the relay has a row for the account. When false
	// the other fields are ignored: the account is new.
	Known bool
	// Host is the hostname the account is bound to.
	Host string
	// Upstream is the status the host last reported (#account);
	// Local is the status the relay imposes (takedown, throttling). Their
	// zero values are no status at all, so a caller that forgets to fill
	// them for a known account gets ReasonInactive, never a silent accept.
	Upstream store.AccountStatus
	Local    store.LocalStatus
	// Rev, Commit and Data are the last accepted commit or sync; Rev is
	// nil until one was accepted (then there is "no state", §12.2 step 11).
	Rev    []byte
	Commit cid.CID
	Data   cid.CID
}

// active applies spec §12.2 step 4: local status active or throttled, and
// the upstream status active. A desynchronized account keeps flowing (the
// chain break was counted; commits still pass, §12.2 step 13), and
// host-throttled counts as throttled.
func (s *AccountState) active() bool {
	if s.Upstream != store.StatusActive {
		return false
	}
	switch s.Local {
	case store.LocalActive, store.LocalDesynchronized, store.LocalThrottled, store.LocalHostThrottled:
		return true
	}
	return false
}

// Identities is what the validator needs from identity resolution.
// *identity.Resolver satisfies it. A re-resolve ("refresh", §8.1) is Purge
// followed by Lookup.
type Identities interface {
	// Lookup returns the identity of did, from cache or resolved.
	Lookup(ctx context.Context, did string) (identity.Identity, error)
	// Purge forgets did so the next Lookup resolves it afresh.
	Purge(did string)
}

var _ Identities = (*identity.Resolver)(nil)

// State is the account state an accepted event establishes.
type State struct {
	// Rev, Commit and Data are views into the validated event's frame
	// (its rev field, its commit CID or CAR root, and the commit block
	// inside blocks): valid exactly as long as the frame buffer is. Copy
	// them before releasing the frame.
	Rev    []byte
	Commit cid.CID
	Data   cid.CID
}

// Verdict is the outcome of one validation.
type Verdict struct {
	// Action is Accept, Drop or Ignore.
	Action Action
	// Reason says why the event was dropped or ignored; ReasonNone when
	// accepted.
	Reason Reason
	// Err carries detail for logs (the failing sub-check, wrapped); nil
	// when accepted. Never match on its text: Reason is the contract.
	Err error
	// Tolerated is the strict-mode failure a Lenient validator passed
	// (ReasonMissingPrevData, ReasonLegacyOp, the inversion reasons), or
	// ReasonNone.
	Tolerated Reason
	// Break reports a discontinuity of an accepted #commit.
	Break ChainBreak
	// Migrated reports an accepted event for a known account bound to
	// another host whose DID document now names this one: the caller
	// moves the account to this host.
	Migrated bool
	// Identity is the identity the event was checked against (zero when
	// the check stopped before resolution).
	Identity identity.Identity
	// NewState is the state to store on Accept.
	NewState State
}

// String formats the verdict for logs and test failures.
func (vd Verdict) String() string {
	return fmt.Sprintf("%s %s (%v) break=%s tolerated=%s migrated=%v", vd.Action, vd.Reason, vd.Err, vd.Break, vd.Tolerated, vd.Migrated)
}
