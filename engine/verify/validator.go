package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/atproto/mst"
	"github.com/atrelay/relay/engine/atproto/syntax"
	"github.com/atrelay/relay/engine/identity"
)

// Errors for failures that have no lower-level error to wrap.
var (
	ErrHostMismatch    = errors.New("verify: DID document names another PDS host")
	ErrInactive        = errors.New("verify: account is not active")
	ErrStaleRev        = errors.New("verify: rev is not after the stored rev")
	ErrBlocksTooLarge  = errors.New("verify: blocks larger than the limit")
	ErrTooManyOps      = errors.New("verify: more ops than the limit")
	ErrEmptyBlocks     = errors.New("verify: blocks is empty")
	ErrNoCommitBlock   = errors.New("verify: CAR has no block for roots[0]")
	ErrDIDMismatch     = errors.New("verify: commit did differs from the event's")
	ErrRevMismatch     = errors.New("verify: commit rev differs from the event's")
	ErrCIDMismatch     = errors.New("verify: event commit CID differs from roots[0]")
	ErrFutureRev       = errors.New("verify: rev is too far in the future")
	ErrDeprecatedFlag  = errors.New("verify: tooBig or rebase is set")
	ErrOpAction        = errors.New("verify: op action is not create, update or delete")
	ErrOpShape         = errors.New("verify: op cid/prev do not fit its action")
	ErrOpLegacy        = errors.New("verify: update or delete without prev")
	ErrOpDuplicate     = errors.New("verify: two ops on one path")
	ErrMissingRecord   = errors.New("verify: record block missing from the CAR")
	ErrMissingPrevData = errors.New("verify: prevData absent although the relay has state")
	ErrEmptyMismatch   = errors.New("verify: commit without ops changed the data root")
)

// Validator validates upstream #commit and #sync events. It owns the
// scratch every check needs (CAR index, MST inverter, signature verifier,
// buffers), so steady-state validation does not allocate. One goroutine at
// a time: give each worker its own.
type Validator struct {
	// cfg is static after New.
	cfg Config

	// Scratch owned by the goroutine calling Commit or Sync; contents are
	// meaningful only during one call.
	car      car.Reader
	get      mst.BlockGetter // v.car.Get, bound once so calls do not allocate
	inv      mst.Inverter
	verifier atcrypto.Verifier
	obj      commitObj
	block    []byte // the commit block (view into the event's blocks)
	ops      []mst.Op
	unsigned []byte
	// did is the last DID passed to Identities, kept so a run of events
	// for one account converts it to a string once.
	did string
	// skipSig is set only by this package's benchmarks, to measure the
	// pipeline without the signature; nothing outside the package can
	// reach it.
	skipSig bool
}

// New returns a Validator with cfg's zero fields set to their defaults.
func New(cfg Config) *Validator {
	v := &Validator{cfg: cfg.withDefaults()}
	v.get = v.car.Get
	return v
}

// Config returns the configuration in effect (defaults applied).
func (v *Validator) Config() Config { return v.cfg }

// drop fills vd as a drop for reason r.
func drop(vd *Verdict, r Reason, err error) Verdict {
	vd.Action, vd.Reason, vd.Err = Drop, r, err
	return *vd
}

// Commit validates one #commit that arrived on the connection to host (a
// hostname normalized as identity.NormalizePDSHost does), with the ordered
// checks of spec §12.2 steps 2–13 (step 1, framing and seq order, is the
// caller's). st is the account's stored state and is not modified.
// NewState in the verdict aliases c's frame.
func (v *Validator) Commit(ctx context.Context, c *event.Commit, host string, st *AccountState, ids Identities) Verdict {
	var vd Verdict
	// Steps 2–4: DID, host authority, account active.
	if r, err := v.account(ctx, c.Repo, host, st, ids, &vd); r != ReasonNone {
		return drop(&vd, r, err)
	}
	// Step 5: rev moves forward.
	if err := syntax.CheckTID(c.Rev); err != nil {
		return drop(&vd, ReasonBadRev, err)
	}
	if st.Known && st.Rev != nil && bytes.Compare(c.Rev, st.Rev) <= 0 {
		return drop(&vd, ReasonStaleRev, ErrStaleRev)
	}
	// Step 6: limits.
	if len(c.Blocks) > v.cfg.Limits.MaxCommitBlocksBytes {
		return drop(&vd, ReasonBlocksTooLarge, ErrBlocksTooLarge)
	}
	if len(c.Ops) > v.cfg.Limits.MaxOps {
		return drop(&vd, ReasonTooManyOps, ErrTooManyOps)
	}
	// Steps 7–9: CAR, commit object, its match with the event, future rev,
	// signature.
	if r, err := v.loadCommit(c.Blocks); r != ReasonNone {
		return drop(&vd, r, err)
	}
	if r, err := v.checkSigned(ctx, c.Repo, c.Rev, c.Commit, host, ids, &vd); r != ReasonNone {
		return drop(&vd, r, err)
	}
	// Step 10: deprecated flags, time, since, op shapes, record blocks.
	if c.TooBig || c.Rebase {
		return drop(&vd, ReasonDeprecatedFlag, ErrDeprecatedFlag)
	}
	if _, err := syntax.ParseDatetime(c.Time); err != nil {
		return drop(&vd, ReasonBadTime, err)
	}
	if c.Since != nil && syntax.CheckTID(c.Since) != nil {
		return drop(&vd, ReasonBadSince, syntax.CheckTID(c.Since))
	}
	legacy, r, err := v.checkOps(c.Ops)
	if r != ReasonNone {
		return drop(&vd, r, err)
	}
	hasState := st.Known && st.Rev != nil
	// Steps 11–12: prevData presence, inversion.
	switch {
	case c.PrevData == nil && !hasState:
		// First sighting without prevData: nothing to invert against.
	case c.PrevData == nil:
		if r := v.tolerate(&vd, ReasonMissingPrevData); r != ReasonNone {
			return drop(&vd, r, ErrMissingPrevData)
		}
	case legacy:
		// Only reachable when Lenient: checkOps refuses legacy ops otherwise.
		vd.Tolerated = ReasonLegacyOp
	default:
		if r, err := v.invert(c.PrevData); r != ReasonNone {
			if r == ReasonBadOp || v.tolerate(&vd, r) != ReasonNone {
				return drop(&vd, r, err)
			}
		}
	}
	// Step 13: continuity. A break is reported, never dropped.
	if hasState {
		switch {
		case !bytes.Equal(c.Since, st.Rev):
			vd.Break = BreakSince
		case c.PrevData != nil && !c.PrevData.Equal(st.Data):
			vd.Break = BreakPrevData
		}
	}
	vd.Action = Accept
	vd.NewState = State{Rev: c.Rev, Commit: c.Commit, Data: v.obj.data}
	return vd
}

// Sync validates one #sync (spec §13.1): the account checks, the commit
// block (size ≤ MaxSyncBlocksBytes) and its signature, then Ignore when
// rev is not after the stored rev. An accepted #sync resets the account's
// state to NewState, which aliases s's frame.
func (v *Validator) Sync(ctx context.Context, s *event.Sync, host string, st *AccountState, ids Identities) Verdict {
	var vd Verdict
	if r, err := v.account(ctx, s.DID, host, st, ids, &vd); r != ReasonNone {
		return drop(&vd, r, err)
	}
	if err := syntax.CheckTID(s.Rev); err != nil {
		return drop(&vd, ReasonBadRev, err)
	}
	if len(s.Blocks) > v.cfg.Limits.MaxSyncBlocksBytes {
		return drop(&vd, ReasonBlocksTooLarge, ErrBlocksTooLarge)
	}
	if r, err := v.loadCommit(s.Blocks); r != ReasonNone {
		return drop(&vd, r, err)
	}
	if r, err := v.checkSigned(ctx, s.DID, s.Rev, nil, host, ids, &vd); r != ReasonNone {
		return drop(&vd, r, err)
	}
	if _, err := syntax.ParseDatetime(s.Time); err != nil {
		return drop(&vd, ReasonBadTime, err)
	}
	// A #sync older than the stored rev is ignored (spec §13.1). One that
	// repeats the stored rev is accepted and forwarded: the reference PDS
	// sends exactly that after every createAccount and reactivation, and
	// the captures require every such frame to pass (the fixture wins over
	// the digest's "rev ≤ stored → ignore").
	if st.Known && st.Rev != nil && bytes.Compare(s.Rev, st.Rev) < 0 {
		vd.Action, vd.Reason, vd.Err = Ignore, ReasonStaleRev, ErrStaleRev
		return vd
	}
	vd.Action = Accept
	vd.NewState = State{Rev: s.Rev, Commit: v.car.Root(), Data: v.obj.data}
	return vd
}

// account runs spec §12.2 steps 2–4 and leaves the identity in vd.
func (v *Validator) account(ctx context.Context, did []byte, host string, st *AccountState, ids Identities, vd *Verdict) (Reason, error) {
	// Step 2: a DID the relay can serve, in its normalized (lower-case) form.
	if err := syntax.CheckBlessedDID(did); err != nil {
		return ReasonBadDID, err
	}
	if v.did != string(did) {
		v.did = string(did)
	}
	// Step 3 (§8.3): the DID document must name this host; one re-resolve
	// on a mismatch, since the cached document may predate a migration.
	ident, err := ids.Lookup(ctx, v.did)
	if err != nil {
		return ReasonIdentityUnavailable, err
	}
	if ident.PDSHost != host {
		if ident, err = v.refresh(ctx, ids); err != nil {
			return ReasonIdentityUnavailable, err
		}
		if ident.PDSHost != host {
			return ReasonWrongHost, fmt.Errorf("%w: %q, event from %q", ErrHostMismatch, ident.PDSHost, host)
		}
	}
	vd.Identity = ident
	// A known account bound elsewhere whose document now names this host
	// has migrated here (§8.3); the caller rebinds it on Accept.
	vd.Migrated = st.Known && st.Host != host
	// Step 4. A new account is active: the host just proved authority.
	if st.Known && !st.active() {
		return ReasonInactive, fmt.Errorf("%w: local %s, upstream %s", ErrInactive, st.Local, st.Upstream)
	}
	return ReasonNone, nil
}

// refresh purges and re-resolves the current DID.
func (v *Validator) refresh(ctx context.Context, ids Identities) (identity.Identity, error) {
	ids.Purge(v.did)
	return ids.Lookup(ctx, v.did)
}

// loadCommit parses the CAR (every block hash-verified) and decodes the
// commit block named by roots[0] (spec §12.2 step 7).
func (v *Validator) loadCommit(blocks []byte) (Reason, error) {
	if len(blocks) == 0 {
		return ReasonEmptyBlocks, ErrEmptyBlocks
	}
	err := v.car.Reset(blocks, car.Options{VerifyHashes: true, MaxBlockSize: v.cfg.Limits.MaxRecordBytes})
	if err != nil {
		if errors.Is(err, car.ErrBlockTooLarge) {
			return ReasonBlockTooLarge, err
		}
		return ReasonBadCAR, err
	}
	block, ok := v.car.Get(v.car.Root())
	if !ok {
		return ReasonMissingCommitBlock, ErrNoCommitBlock
	}
	v.block = block
	if err := v.obj.parse(block); err != nil {
		return ReasonBadCommit, err
	}
	return ReasonNone, nil
}

// checkSigned ties the loaded commit to the event and verifies its
// signature: commit.did == did, commit.rev == rev, commitCID (nil for
// #sync) == roots[0], the rev not in the future, then the signature with
// one re-resolve on failure (spec §12.2 steps 8–9, §8.1).
func (v *Validator) checkSigned(ctx context.Context, did, rev []byte, commitCID cid.CID, host string, ids Identities, vd *Verdict) (Reason, error) {
	if !bytes.Equal(v.obj.did, did) {
		return ReasonCommitDIDMismatch, ErrDIDMismatch
	}
	if !bytes.Equal(v.obj.rev, rev) {
		return ReasonCommitRevMismatch, ErrRevMismatch
	}
	if commitCID != nil && !commitCID.Equal(v.car.Root()) {
		return ReasonCommitCIDMismatch, ErrCIDMismatch
	}
	tid, err := syntax.DecodeTID(rev)
	if err != nil {
		return ReasonBadRev, err
	}
	// A TID's top 53 bits below the clock id are microseconds since 1970.
	limit := v.cfg.Now().Add(v.cfg.FutureRevTolerance).UnixMicro()
	if int64(tid>>10) > limit {
		return ReasonFutureRev, ErrFutureRev
	}
	v.unsigned = v.obj.appendUnsigned(v.unsigned[:0], v.block)
	if v.skipSig {
		return ReasonNone, nil
	}
	err = v.verifier.Verify(vd.Identity.Key, v.unsigned, v.obj.sig)
	if err == nil {
		return ReasonNone, nil
	}
	if malformedSig(err) {
		// No key can verify it; re-resolving would only cost a request.
		return ReasonBadSignature, err
	}
	ident, lerr := v.refresh(ctx, ids)
	if lerr != nil {
		return ReasonIdentityUnavailable, lerr
	}
	if ident.PDSHost != host {
		return ReasonWrongHost, fmt.Errorf("%w: %q after re-resolving, event from %q", ErrHostMismatch, ident.PDSHost, host)
	}
	vd.Identity = ident
	if err := v.verifier.Verify(ident.Key, v.unsigned, v.obj.sig); err != nil {
		return ReasonBadSignature, err
	}
	return ReasonNone, nil
}

// malformedSig reports signature errors that do not depend on the key.
func malformedSig(err error) bool {
	return errors.Is(err, atcrypto.ErrSigDER) || errors.Is(err, atcrypto.ErrSigLength) ||
		errors.Is(err, atcrypto.ErrSigHighS) || errors.Is(err, atcrypto.ErrSigRange)
}

// tolerate records r as tolerated when Lenient and returns ReasonNone;
// when Strict it returns r unchanged (the caller drops).
func (v *Validator) tolerate(vd *Verdict, r Reason) Reason {
	if v.cfg.Mode != Lenient {
		return r
	}
	if vd.Tolerated == ReasonNone {
		vd.Tolerated = r
	}
	return ReasonNone
}
