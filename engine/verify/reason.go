package verify

import "github.com/atrelay/relay/engine/label"

// Action is what the caller does with a validated event. The zero value is
// no action at all, so a Verdict that was never filled in accepts nothing.
type Action uint8

// The actions.
const (
	// Accept: store the new state, assign a relay seq, emit the event.
	Accept Action = iota + 1
	// Drop: the event is invalid or not authoritative; count Reason.
	Drop
	// Ignore: a valid no-op (a #sync at or below the stored rev, §13.1);
	// nothing is stored or emitted.
	Ignore
)

// String returns "accept", "drop" or "ignore" ("none" for the zero value).
func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	case Ignore:
		return "ignore"
	}
	return "none"
}

// Reason says why an event was dropped or ignored, or which strict-mode
// failure a Lenient validator tolerated. The set is closed: every value
// has a stable snake_case String used as a metric label, and AllReasons
// lists them so counters can be created at zero. The numbering follows
// the order of the checks and is not persisted anywhere.
type Reason uint8

// The reasons, in check order (spec §12.2, §13.1).
const (
	ReasonNone                Reason = iota
	ReasonBadDID                     // repo/did is not a valid did:plc or did:web (§12.2 step 2)
	ReasonIdentityUnavailable        // the DID does not resolve to a working identity (§8.2)
	ReasonWrongHost                  // the DID document names another PDS host, even after re-resolving (§8.3)
	ReasonInactive                   // the account is not active, locally or upstream (step 4)
	ReasonBadRev                     // the event rev is not a TID
	ReasonStaleRev                   // rev ≤ the stored rev (step 5; Ignore for #sync)
	ReasonBlocksTooLarge             // blocks larger than its limit (step 6)
	ReasonTooManyOps                 // more ops than MaxOps (step 6)
	ReasonEmptyBlocks                // blocks is empty (step 10; checked before the CAR is parsed)
	ReasonBadCAR                     // blocks is not a valid CAR v1 or a block fails its hash (step 7)
	ReasonBlockTooLarge              // a CAR block (a record, in practice) is larger than MaxRecordBytes
	ReasonMissingCommitBlock         // no block for roots[0]
	ReasonBadCommit                  // the commit block is not a canonical version-3 commit (§6.1)
	ReasonCommitDIDMismatch          // commit.did != repo/did
	ReasonCommitRevMismatch          // commit.rev != rev
	ReasonCommitCIDMismatch          // event commit CID != roots[0]
	ReasonFutureRev                  // rev timestamp beyond now + tolerance (step 8)
	ReasonBadSignature               // the signature does not verify, even after re-resolving (step 9)
	ReasonDeprecatedFlag             // tooBig or rebase is true (step 10)
	ReasonBadTime                    // time is not a valid datetime
	ReasonBadSince                   // since is neither null nor a TID
	ReasonBadOp                      // an op has an invalid action, path or cid/prev shape (§10.1)
	ReasonLegacyOp                   // an update/delete lacks prev (pre-1.1 producer; tolerated only when Lenient)
	ReasonMissingRecord              // a create/update record block is not in the CAR (§12.3 step 2)
	ReasonBadRecord                  // a record block is not well-formed CBOR
	ReasonMissingPrevData            // prevData absent although the relay has state (step 11)
	ReasonMissingBlock               // inversion needs an MST block the CAR lacks (step 12)
	ReasonInversionMismatch          // the inverted tree is not prevData, or an op disagrees with the tree
	ReasonBadMST                     // an MST node in the CAR is malformed
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonNone:                "none",
	ReasonBadDID:              "bad_did",
	ReasonIdentityUnavailable: "identity_unavailable",
	ReasonWrongHost:           "wrong_host",
	ReasonInactive:            "inactive",
	ReasonBadRev:              "bad_rev",
	ReasonStaleRev:            "stale_rev",
	ReasonBlocksTooLarge:      "blocks_too_large",
	ReasonTooManyOps:          "too_many_ops",
	ReasonEmptyBlocks:         "empty_blocks",
	ReasonBadCAR:              "bad_car",
	ReasonBlockTooLarge:       "block_too_large",
	ReasonMissingCommitBlock:  "missing_commit_block",
	ReasonBadCommit:           "bad_commit",
	ReasonCommitDIDMismatch:   "commit_did_mismatch",
	ReasonCommitRevMismatch:   "commit_rev_mismatch",
	ReasonCommitCIDMismatch:   "commit_cid_mismatch",
	ReasonFutureRev:           "future_rev",
	ReasonBadSignature:        "bad_signature",
	ReasonDeprecatedFlag:      "deprecated_flag",
	ReasonBadTime:             "bad_time",
	ReasonBadSince:            "bad_since",
	ReasonBadOp:               "bad_op",
	ReasonLegacyOp:            "legacy_op",
	ReasonMissingRecord:       "missing_record",
	ReasonBadRecord:           "bad_record",
	ReasonMissingPrevData:     "missing_prevdata",
	ReasonMissingBlock:        "missing_block",
	ReasonInversionMismatch:   "inversion_mismatch",
	ReasonBadMST:              "bad_mst",
}

// String returns the reason's metric label ("unknown" outside the set).
func (r Reason) String() string { return label.Of(reasonNames[:], r) }

// AllReasons returns every reason except ReasonNone, in check order, for
// creating per-reason counters at start-up.
func AllReasons() []Reason {
	out := make([]Reason, 0, numReasons-1)
	for r := ReasonNone + 1; r < numReasons; r++ {
		out = append(out, r)
	}
	return out
}

// ChainBreak classifies a discontinuity of an accepted #commit (spec
// §12.2 step 13): the commit is valid but does not follow the stored
// state. It is counted, never a reason to drop.
type ChainBreak uint8

// The chain-break kinds.
const (
	BreakNone ChainBreak = iota
	// BreakSince: since differs from the stored rev.
	BreakSince
	// BreakPrevData: since matches but prevData differs from the stored data.
	BreakPrevData
)

// String returns the metric label: "none", "since_mismatch",
// "prevdata_mismatch".
func (b ChainBreak) String() string {
	switch b {
	case BreakSince:
		return "since_mismatch"
	case BreakPrevData:
		return "prevdata_mismatch"
	}
	return "none"
}
