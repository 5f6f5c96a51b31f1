package verify

import (
	"errors"
	"fmt"
	"time"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/dagcbor"
	"github.com/atrelay/relay/engine/atproto/mst"
	"github.com/atrelay/relay/engine/atproto/syntax"
)

// RepoConfig bounds one whole-repository verification (resync). Zero
// fields take the documented defaults, never "unlimited".
type RepoConfig struct {
	// MaxBlocks bounds the blocks of the CAR; default car.DefaultMaxBlocks
	// (2,000,000). Exceeding it fails with ReasonBadCAR.
	MaxBlocks int
	// MaxBlockSize bounds any one block (records included); default
	// DefaultMaxRecordBytes. Exceeding it fails with ReasonBlockTooLarge.
	MaxBlockSize int
	// FutureRevTolerance is how far past Now the commit rev may lie;
	// default DefaultFutureRevTolerance. A repo whose rev is further ahead
	// fails with ReasonFutureRev: storing it would make every honest later
	// commit look stale.
	FutureRevTolerance time.Duration
	// Now is the clock for the future-rev check; nil means time.Now.
	Now func() time.Time
}

func (c RepoConfig) withDefaults() RepoConfig {
	if c.MaxBlocks <= 0 {
		c.MaxBlocks = car.DefaultMaxBlocks
	}
	if c.MaxBlockSize <= 0 {
		c.MaxBlockSize = DefaultMaxRecordBytes
	}
	if c.FutureRevTolerance <= 0 {
		c.FutureRevTolerance = DefaultFutureRevTolerance
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// RepoState is the verified head of a whole repository export. Every field
// except Records is a view into the CAR passed to Verify: valid exactly as
// long as that buffer is unchanged. Copy what must outlive it.
type RepoState struct {
	// Rev is the commit's rev (a TID).
	Rev []byte
	// Commit is the commit CID (the CAR's roots[0]).
	Commit cid.CID
	// Data is the MST root CID named by the commit.
	Data cid.CID
	// CommitBlock is the signed commit block: a #sync CAR holds exactly
	// this block under Commit (spec §5.3).
	CommitBlock []byte
	// Records is the number of MST leaves (records) in the repository.
	Records int
}

// RepoError is a failed whole-repository verification: Reason is the
// closed-set label (one of the Reasons listed on RepoVerifier.Verify) and
// Err the detail, which wraps the lower-level sentinel (car.Err…, mst.Err…,
// atcrypto.Err…, or this package's). Match on Reason or with errors.Is,
// never on the text.
type RepoError struct {
	Reason Reason
	Err    error
}

// Error formats the reason and its detail.
func (e *RepoError) Error() string {
	return "verify: repo: " + e.Reason.String() + ": " + e.Err.Error()
}

// Unwrap returns the detail error.
func (e *RepoError) Unwrap() error { return e.Err }

// RepoReason returns the Reason of an error from RepoVerifier.Verify or
// VerifyRepo: ReasonNone for nil, ReasonBadCAR for an error of another
// origin (it cannot happen; the fallback keeps callers total).
func RepoReason(err error) Reason {
	if err == nil {
		return ReasonNone
	}
	var re *RepoError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ReasonBadCAR
}

// ErrRecordEncoding wraps the dagcbor error of a record block that is not
// well-formed CBOR (ReasonBadRecord); the message names its path.
var ErrRecordEncoding = errors.New("verify: record block is not well-formed CBOR")

// RepoVerifier checks whole-repository CAR exports (com.atproto.sync.getRepo)
// for resync. It owns its scratch (CAR index, MST walker, signature
// verifier, buffers), so verifying repositories no larger than the largest
// seen before allocates nothing on success. One goroutine at a time: give
// each resync worker its own.
type RepoVerifier struct {
	// cfg is static after NewRepoVerifier.
	cfg RepoConfig

	// Scratch owned by the goroutine calling Verify; meaningful only
	// during one call.
	car      car.Reader
	get      mst.BlockGetter // r.car.Get, bound once so Verify does not allocate
	leaf     func(key []byte, val cid.CID) error
	walker   mst.Walker
	verifier atcrypto.Verifier
	obj      commitObj
	unsigned []byte
	records  int
}

// NewRepoVerifier returns a RepoVerifier with cfg's zero fields defaulted.
func NewRepoVerifier(cfg RepoConfig) *RepoVerifier {
	r := &RepoVerifier{cfg: cfg.withDefaults()}
	r.get = r.car.Get
	r.leaf = r.checkLeaf
	return r
}

// VerifyRepo verifies one repository export with a fresh RepoVerifier;
// see RepoVerifier.Verify. Workers that verify many keep a RepoVerifier.
func VerifyRepo(carBytes []byte, did string, key atcrypto.PublicKey, cfg RepoConfig) (RepoState, error) {
	return NewRepoVerifier(cfg).Verify(carBytes, did, key)
}

// Verify checks that carBytes is the complete, signed repository of did
// under key, in this order (first failure decides; the error is a
// *RepoError):
//
//	CAR v1, every block hashes to its CID, within the limits  empty_blocks, bad_car, block_too_large
//	a block for roots[0]                                      missing_commit_block
//	canonical version-3 commit object (spec §6.1)             bad_commit
//	commit.did == did                                         commit_did_mismatch
//	rev timestamp ≤ now + tolerance                           future_rev
//	signature over the unsigned commit with key               bad_signature
//	every MST node from data present and valid (spec §6.2)    missing_block, bad_mst
//	every leaf's record block present and well-formed CBOR    missing_record, bad_record
//
// key is used as given: the caller resolves it freshly (a resync often
// follows a key rotation). Whether the rev is newer than the state the
// relay holds is the caller's decision. The returned state aliases
// carBytes.
func (r *RepoVerifier) Verify(carBytes []byte, did string, key atcrypto.PublicKey) (RepoState, error) {
	st, reason, err := r.verify(carBytes, did, key)
	if reason != ReasonNone {
		return RepoState{}, &RepoError{Reason: reason, Err: err}
	}
	return st, nil
}

func (r *RepoVerifier) verify(carBytes []byte, did string, key atcrypto.PublicKey) (RepoState, Reason, error) {
	if len(carBytes) == 0 {
		return RepoState{}, ReasonEmptyBlocks, ErrEmptyBlocks
	}
	err := r.car.Reset(carBytes, car.Options{VerifyHashes: true, MaxBlocks: r.cfg.MaxBlocks, MaxBlockSize: r.cfg.MaxBlockSize})
	if err != nil {
		if errors.Is(err, car.ErrBlockTooLarge) {
			return RepoState{}, ReasonBlockTooLarge, err
		}
		return RepoState{}, ReasonBadCAR, err
	}
	root := r.car.Root()
	block, ok := r.car.Get(root)
	if !ok {
		return RepoState{}, ReasonMissingCommitBlock, ErrNoCommitBlock
	}
	if err := r.obj.parse(block); err != nil {
		return RepoState{}, ReasonBadCommit, err
	}
	if string(r.obj.did) != did {
		return RepoState{}, ReasonCommitDIDMismatch, fmt.Errorf("%w: commit names %q", ErrDIDMismatch, r.obj.did)
	}
	tid, err := syntax.DecodeTID(r.obj.rev)
	if err != nil {
		return RepoState{}, ReasonBadRev, err
	}
	// A TID's bits above the 10-bit clock id are microseconds since 1970.
	if int64(tid>>10) > r.cfg.Now().Add(r.cfg.FutureRevTolerance).UnixMicro() {
		return RepoState{}, ReasonFutureRev, ErrFutureRev
	}
	r.unsigned = r.obj.appendUnsigned(r.unsigned[:0], block)
	if err := r.verifier.Verify(key, r.unsigned, r.obj.sig); err != nil {
		return RepoState{}, ReasonBadSignature, err
	}
	r.records = 0
	if err := r.walker.Walk(r.get, r.obj.data, r.leaf); err != nil {
		switch {
		case errors.Is(err, ErrMissingRecord):
			return RepoState{}, ReasonMissingRecord, err
		case errors.Is(err, ErrRecordEncoding):
			return RepoState{}, ReasonBadRecord, err
		case errors.Is(err, mst.ErrMissingBlock):
			return RepoState{}, ReasonMissingBlock, err
		}
		return RepoState{}, ReasonBadMST, err
	}
	return RepoState{Rev: r.obj.rev, Commit: root, Data: r.obj.data, CommitBlock: block, Records: r.records}, ReasonNone, nil
}

// checkLeaf is the walker's callback: the record block of every leaf must
// be in the CAR (its hash was checked with the CAR) and be well-formed.
// Errors are built only on failure, so a clean walk does not allocate.
func (r *RepoVerifier) checkLeaf(key []byte, val cid.CID) error {
	r.records++
	b, ok := r.car.Get(val)
	if !ok {
		return fmt.Errorf("%w: %s", ErrMissingRecord, key)
	}
	if err := dagcbor.Wellformed(b); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrRecordEncoding, key, err)
	}
	return nil
}
