package mst

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/atrelay/relay/engine/atproto/cid"
)

// Action is the kind of a repo op in a #commit.
type Action uint8

// Actions of #commit ops.
const (
	ActionCreate Action = iota + 1
	ActionUpdate
	ActionDelete
)

// String returns the lexicon name of the action.
func (a Action) String() string {
	switch a {
	case ActionCreate:
		return "create"
	case ActionUpdate:
		return "update"
	case ActionDelete:
		return "delete"
	}
	return "invalid"
}

// Op is one op of a #commit. Path and the CIDs may alias the frame; they
// are only read during Invert.
type Op struct {
	Action Action
	// Path is the MST key "<collection>/<record-key>".
	Path []byte
	// CID is the new record CID (create, update); nil for delete.
	CID cid.CID
	// Prev is the previous record CID (update, delete); nil for create.
	Prev cid.CID
}

// Errors of commit inversion, one per failure reason.
var (
	ErrTooManyOps        = errors.New("mst: more than MaxOps ops")
	ErrOpInvalid         = errors.New("mst: op has an unknown action or lacks cid/prev")
	ErrDuplicatePath     = errors.New("mst: two ops on the same path")
	ErrForwardMismatch   = errors.New("mst: new tree does not hold the op's cid at its path")
	ErrUndoCreate        = errors.New("mst: undoing create removed a different value")
	ErrUndoUpdate        = errors.New("mst: undoing update displaced a different value")
	ErrUndoDelete        = errors.New("mst: undoing delete found the path occupied")
	ErrInversionMismatch = errors.New("mst: inverted root differs from prevData")
)

// Inverter undoes the ops of #commit messages on the partial trees their
// CAR slices carry (digest §12.3). It keeps its node pool and buffers
// between calls, so steady-state use does not allocate. Single goroutine:
// give each validation worker its own.
type Inverter struct {
	f    forest      // nodes of the current call; pool reused
	keys []byte      // decoded keys of the current call
	ops  []pendingOp // sorted copy of the current call's ops
	root [cid.BlessedLen]byte
}

// pendingOp is one op of the current Invert call with the height of its
// path, computed once: SHA-256 of the path is a large share of a small
// commit's cost. Owned by the Inverter.
type pendingOp struct {
	Op
	height int
}

// Invert loads the partial tree rooted at data from get, checks that every
// create/update op is present in it, undoes the ops and returns the root
// CID of the tree before the commit. The result aliases v and is valid
// until the next call. A block the undo needs but get lacks gives
// ErrMissingBlock. Record blocks are never looked up: that each
// create/update record is in the CAR is the caller's check (digest §12.3
// step 2).
func (v *Inverter) Invert(get BlockGetter, data cid.CID, ops []Op) (cid.CID, error) {
	return v.invert(get, data, ops, false)
}

// InvertVerified is Invert for a getter that returns only blocks already
// verified to hash to the CID they are returned for, such as a CAR reader
// that checked every block's hash: node blocks are then not hashed again.
// Every other check of Invert is made.
func (v *Inverter) InvertVerified(get BlockGetter, data cid.CID, ops []Op) (cid.CID, error) {
	return v.invert(get, data, ops, true)
}

// invert is Invert; verified skips re-hashing the blocks get returns.
func (v *Inverter) invert(get BlockGetter, data cid.CID, ops []Op, verified bool) (cid.CID, error) {
	f := &v.f
	f.reuse = true
	f.resetPool()
	defer v.release()
	if len(ops) > MaxOps {
		return nil, ErrTooManyOps
	}
	v.ops = v.ops[:0]
	for i := range ops {
		v.ops = append(v.ops, pendingOp{Op: ops[i], height: -1})
		if err := checkOp(&v.ops[i].Op); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(v.ops, func(a, b pendingOp) int { return bytes.Compare(a.Path, b.Path) })
	for i := 1; i < len(v.ops); i++ {
		if bytes.Equal(v.ops[i-1].Path, v.ops[i].Path) {
			return nil, fmt.Errorf("%w: %q", ErrDuplicatePath, v.ops[i].Path)
		}
	}
	var err error
	if v.keys, err = f.loadPartial(get, data, v.keys[:0], verified); err != nil {
		return nil, err
	}
	for i := range v.ops {
		op := &v.ops[i]
		if op.Action == ActionDelete {
			op.height = Height(op.Path)
			continue
		}
		got, err := v.forward(op)
		if err != nil {
			return nil, err
		}
		if !got.Equal(op.CID) {
			return nil, fmt.Errorf("%w: %s %q", ErrForwardMismatch, op.Action, op.Path)
		}
	}
	// Reference order: deletes first, then by path. The final root does
	// not depend on it; the blocks the steps touch do (digest §12.3).
	slices.SortFunc(v.ops, func(a, b pendingOp) int {
		if da, db := a.Action == ActionDelete, b.Action == ActionDelete; da != db {
			if da {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.Path, b.Path)
	})
	for i := range v.ops {
		if err := v.undo(&v.ops[i]); err != nil {
			return nil, err
		}
	}
	v.root = f.rootCID()
	return v.root[:], nil
}

// forward returns the value the freshly loaded tree holds at op's path and
// sets op.height. A key found in a loaded node has that node's level as
// its height, because loading checked the height of every key, so the
// path is hashed only when the loaded nodes do not hold it; get then gives
// the same answer as a search by height (nil or ErrMissingBlock).
func (v *Inverter) forward(op *pendingOp) (cid.CID, error) {
	for n := v.f.root; n != nil && n.loaded; {
		i, found := search(n.ents, op.Path)
		if found {
			op.height = n.level
			return n.ents[i].val, nil
		}
		n = n.gap(i)
	}
	op.height = Height(op.Path)
	return v.f.get(op.Path, op.height)
}

// Check inverts the commit and compares the result with prevData.
func (v *Inverter) Check(get BlockGetter, data, prevData cid.CID, ops []Op) error {
	return v.check(get, data, prevData, ops, false)
}

// CheckVerified is Check for a getter of already verified blocks (see
// InvertVerified).
func (v *Inverter) CheckVerified(get BlockGetter, data, prevData cid.CID, ops []Op) error {
	return v.check(get, data, prevData, ops, true)
}

// check is Check; verified as for invert.
func (v *Inverter) check(get BlockGetter, data, prevData cid.CID, ops []Op, verified bool) error {
	prev, err := v.invert(get, data, ops, verified)
	if err != nil {
		return err
	}
	if !prev.Equal(prevData) {
		return ErrInversionMismatch
	}
	return nil
}

// undo applies the inverse of one op at its known height.
func (v *Inverter) undo(op *pendingOp) error {
	h := op.height
	switch op.Action {
	case ActionCreate:
		old, err := v.f.remove(op.Path, h)
		if err != nil {
			return err
		}
		if !old.Equal(op.CID) {
			return fmt.Errorf("%w: %q", ErrUndoCreate, op.Path)
		}
	case ActionUpdate:
		old, err := v.f.put(op.Path, op.Prev, h)
		if err != nil {
			return err
		}
		if !old.Equal(op.CID) {
			return fmt.Errorf("%w: %q", ErrUndoUpdate, op.Path)
		}
	default:
		old, err := v.f.put(op.Path, op.Prev, h)
		if err != nil {
			return err
		}
		if old != nil {
			return fmt.Errorf("%w: %q", ErrUndoDelete, op.Path)
		}
	}
	return nil
}

// release drops references into the caller's buffers so the pool does not
// pin frames between calls.
func (v *Inverter) release() {
	clear(v.ops)
	for _, n := range v.f.pool[:v.f.used] {
		clear(n.ents)
		n.left = nil
	}
	v.f.root = nil
}

// checkOp validates the shape of one op.
func checkOp(op *Op) error {
	if !ValidKey(op.Path) {
		return fmt.Errorf("%w: %q", ErrKeyInvalid, op.Path)
	}
	hasCID, hasPrev := len(op.CID) > 0, len(op.Prev) > 0
	ok := false
	switch op.Action {
	case ActionCreate:
		ok = hasCID && !hasPrev
	case ActionUpdate:
		ok = hasCID && hasPrev
	case ActionDelete:
		ok = !hasCID && hasPrev
	}
	if !ok {
		return fmt.Errorf("%w: %s %q", ErrOpInvalid, op.Action, op.Path)
	}
	return nil
}
