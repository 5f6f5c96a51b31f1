package verify

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/dagcbor"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/atproto/mst"
	"github.com/atrelay/relay/engine/atproto/syntax"
)

// checkOps checks every op's shape (spec §10.1) and the record block of
// every create and update (§12.3 step 2), and fills v.ops for inversion.
// legacy reports update/delete ops without prev, accepted only when
// Lenient (they cannot be inverted).
func (v *Validator) checkOps(ops []event.Op) (legacy bool, r Reason, err error) {
	v.ops = v.ops[:0]
	for i := range ops {
		op := &ops[i]
		var a mst.Action
		switch string(op.Action) {
		case "create":
			a = mst.ActionCreate
		case "update":
			a = mst.ActionUpdate
		case "delete":
			a = mst.ActionDelete
		default:
			return false, ReasonBadOp, fmt.Errorf("%w: ops[%d]", ErrOpAction, i)
		}
		if err := syntax.CheckRepoPath(op.Path); err != nil || !mst.ValidKey(op.Path) {
			return false, ReasonBadOp, fmt.Errorf("ops[%d] path: %w", i, err)
		}
		hasCID, hasPrev := op.CID != nil, op.Prev != nil
		switch {
		case a == mst.ActionCreate && (!hasCID || hasPrev),
			a == mst.ActionUpdate && !hasCID,
			a == mst.ActionUpdate && hasPrev && op.CID.Equal(op.Prev),
			a == mst.ActionDelete && hasCID:
			return false, ReasonBadOp, fmt.Errorf("%w: ops[%d] %s", ErrOpShape, i, op.Action)
		case a != mst.ActionCreate && !hasPrev:
			if v.cfg.Mode != Lenient {
				return false, ReasonBadOp, fmt.Errorf("%w: ops[%d]", ErrOpLegacy, i)
			}
			legacy = true
		}
		if hasCID {
			if r, err := v.checkRecord(op.CID); r != ReasonNone {
				return false, r, fmt.Errorf("ops[%d]: %w", i, err)
			}
		}
		v.ops = append(v.ops, mst.Op{Action: a, Path: op.Path, CID: op.CID, Prev: op.Prev})
	}
	// Two ops on one path make the commit ambiguous in every mode; the
	// inverter sorts its own copy, so sorting here changes nothing.
	slices.SortFunc(v.ops, func(a, b mst.Op) int { return bytes.Compare(a.Path, b.Path) })
	for i := 1; i < len(v.ops); i++ {
		if bytes.Equal(v.ops[i-1].Path, v.ops[i].Path) {
			return false, ReasonBadOp, fmt.Errorf("%w: %q", ErrOpDuplicate, v.ops[i].Path)
		}
	}
	return legacy, ReasonNone, nil
}

// checkRecord checks that the record block c is in the CAR and is
// well-formed CBOR. Its hash and its size (≤ MaxRecordBytes) were checked
// with the CAR.
func (v *Validator) checkRecord(c cid.CID) (Reason, error) {
	b, ok := v.car.Get(c)
	if !ok {
		return ReasonMissingRecord, ErrMissingRecord
	}
	if err := dagcbor.Wellformed(b); err != nil {
		return ReasonBadRecord, err
	}
	return ReasonNone, nil
}

// invert undoes the ops on the partial tree in the CAR and compares the
// result with prevData (spec §12.2 step 12, §12.3).
func (v *Validator) invert(prevData cid.CID) (Reason, error) {
	if len(v.ops) == 0 {
		// Nothing changed, so the tree is the previous one; no block of it
		// needs to be present.
		if !prevData.Equal(v.obj.data) {
			return ReasonInversionMismatch, ErrEmptyMismatch
		}
		return ReasonNone, nil
	}
	// The CAR reader hashed every block against its CID in loadCommit, so
	// the inverter need not hash the node blocks a second time.
	err := v.inv.CheckVerified(v.get, v.obj.data, prevData, v.ops)
	switch {
	case err == nil:
		return ReasonNone, nil
	case errors.Is(err, mst.ErrMissingBlock):
		return ReasonMissingBlock, err
	case errors.Is(err, mst.ErrInversionMismatch), errors.Is(err, mst.ErrForwardMismatch),
		errors.Is(err, mst.ErrUndoCreate), errors.Is(err, mst.ErrUndoUpdate), errors.Is(err, mst.ErrUndoDelete):
		return ReasonInversionMismatch, err
	case errors.Is(err, mst.ErrDuplicatePath), errors.Is(err, mst.ErrOpInvalid), errors.Is(err, mst.ErrTooManyOps):
		return ReasonBadOp, err
	}
	return ReasonBadMST, err
}
