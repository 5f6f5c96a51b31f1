package repo

import (
	"errors"
	"fmt"
	"time"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/dagcbor"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/atproto/mst"
	"github.com/atrelay/relay/engine/atproto/syntax"
)

// Errors returned by New and Apply, one per reason a request is refused.
// Apply checks every write before changing anything, so a refused batch
// leaves the repository as it was.
var (
	ErrBadDID       = errors.New("repo: invalid DID")
	ErrNoKey        = errors.New("repo: no signing key")
	ErrAction       = errors.New("repo: unknown write action")
	ErrBadPath      = errors.New("repo: invalid collection/rkey path")
	ErrDuplicate    = errors.New("repo: two writes to one path in a batch")
	ErrNoRecord     = errors.New("repo: create or update without a record")
	ErrBadRecord    = errors.New("repo: record is not canonical DAG-CBOR")
	ErrExists       = errors.New("repo: create of an existing record")
	ErrNotFound     = errors.New("repo: update or delete of a missing record")
	ErrUnchanged    = errors.New("repo: update to an identical record")
	ErrNoCommit     = errors.New("repo: no commit yet")
	ErrTooManyWrite = errors.New("repo: more writes than a #commit may carry")
	ErrForgotten    = errors.New("repo: record blocks are not kept (Options.ForgetRecords)")
)

// Write is one change of a batch: create or update stores Record under
// Collection/RKey, delete removes it (Record is then ignored).
type Write struct {
	Action     mst.Action
	Collection string
	RKey       string
	// Record is the record's canonical DAG-CBOR encoding (see PostRecord).
	Record []byte
}

// Options configure New. Zero fields take the documented defaults.
type Options struct {
	// Now is the clock for revs and event times; nil means time.Now.
	Now func() time.Time
	// ClockID is stamped into every rev (low 10 bits); default 0.
	ClockID uint
	// ForgetRecords keeps only the record CIDs in the tree, not the record
	// blocks, once the commit that wrote them is returned: for an offline
	// generator holding a million repositories, whose memory is otherwise
	// mostly record text. Get then returns a nil block and ExportCAR fails
	// with ErrForgotten.
	ForgetRecords bool
}

// record is one stored record block and the number of paths holding it.
type record struct {
	data []byte
	refs int
}

// Repo is one account's repository. Single goroutine: no method may run
// concurrently with another.
type Repo struct {
	// Static after New.
	did    []byte
	key    *atcrypto.PrivateKey
	now    func() time.Time
	forget bool // Options.ForgetRecords

	// Owned by the goroutine using the Repo.
	clock   *syntax.TIDClock
	tree    *mst.Tree
	records map[string]*record // binary record CID → block
	// rootNode is the MST root block of the last commit (Commit emits the
	// root first).
	rootNode car.Block
	// head is the last commit; commit is nil before the first Apply.
	head struct {
		commit cid.CID
		block  []byte
		data   cid.CID
		rev    []byte
	}
}

// New returns an empty repository for did signed with key. It holds no
// commit until the first Apply (Apply(nil) makes the empty genesis commit a
// PDS emits on createAccount).
func New(did string, key *atcrypto.PrivateKey, opts Options) (*Repo, error) {
	if err := syntax.CheckDID([]byte(did)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadDID, err)
	}
	if key == nil {
		return nil, ErrNoKey
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Repo{
		did:     []byte(did),
		key:     key,
		now:     now,
		forget:  opts.ForgetRecords,
		clock:   syntax.NewTIDClock(opts.ClockID, now),
		tree:    mst.NewTree(),
		records: map[string]*record{},
	}, nil
}

// DID returns the account DID.
func (r *Repo) DID() string { return string(r.did) }

// PublicKey returns the key commits verify with.
func (r *Repo) PublicKey() atcrypto.PublicKey { return r.key.Public() }

// Rev returns the rev of the last commit ("" before the first).
func (r *Repo) Rev() string { return string(r.head.rev) }

// CommitCID returns the CID of the last commit (nil before the first).
func (r *Repo) CommitCID() cid.CID { return r.head.commit.Clone() }

// Data returns the MST root of the last commit (nil before the first).
func (r *Repo) Data() cid.CID { return r.head.data.Clone() }

// Len returns the number of records.
func (r *Repo) Len() int { return r.tree.Len() }

// Get returns the CID and block of the record at collection/rkey, or nils.
// The block is shared with the repository and must not be modified; it is
// nil under Options.ForgetRecords.
func (r *Repo) Get(collection, rkey string) (cid.CID, []byte) {
	c := r.tree.Get([]byte(collection + "/" + rkey))
	if c == nil {
		return nil, nil
	}
	if r.forget {
		return c.Clone(), nil
	}
	return c.Clone(), r.records[string(c)].data
}

// NextTID returns a fresh TID from the repository's clock, for record keys.
// It sorts below every rev issued afterwards.
func (r *Repo) NextTID() string { return string(r.clock.Next()) }

// staged is a checked write with its path and record CID.
type staged struct {
	w    *Write
	path []byte
	cid  cid.CID
	prev cid.CID
}

// Apply commits writes as one signed commit and returns the #commit event
// a reference PDS would emit for it (Seq 0: the caller sets it). An empty
// batch makes an empty commit (a new rev and signature only).
func (r *Repo) Apply(writes []Write) (*event.Commit, error) {
	st, err := r.stage(writes)
	if err != nil {
		return nil, err
	}
	ops := make([]event.Op, len(st))
	var recs []car.Block
	for i := range st {
		s := &st[i]
		ops[i] = event.Op{Action: []byte(s.w.Action.String()), Path: s.path, CID: s.cid, Prev: s.prev}
		if s.w.Action == mst.ActionDelete {
			if _, err := r.tree.Delete(s.path); err != nil {
				return nil, err
			}
			r.unref(s.prev)
			continue
		}
		if _, err := r.tree.Insert(s.path, s.cid); err != nil {
			return nil, err
		}
		if s.prev != nil {
			r.unref(s.prev)
		}
		r.ref(s.cid, s.w.Record)
		// The write's own bytes: the stored block has the same CID, and
		// under ForgetRecords there is none.
		recs = append(recs, car.Block{CID: s.cid, Data: s.w.Record})
	}
	var nodes []car.Block
	data := r.tree.Commit(func(c cid.CID, block []byte) {
		nodes = append(nodes, car.Block{CID: c.Clone(), Data: append([]byte(nil), block...)})
	})
	if len(nodes) == 0 {
		// An unchanged tree lists no node, but consumers load the root to
		// check the (empty) inversion, as the reference PDS lets them.
		nodes = append(nodes, r.rootNode)
	}
	r.rootNode = nodes[0]
	rev := r.clock.AppendNext(nil)
	if r.head.rev != nil && syntax.CompareTID(rev, r.head.rev) <= 0 {
		// A restored clock may lag a rev issued earlier; never go back.
		v, _ := syntax.DecodeTID(r.head.rev)
		rev = syntax.AppendTID(nil, v+1)
	}
	block, commitCID, err := r.sign(rev, data)
	if err != nil {
		return nil, err
	}
	blocks := car.AppendHeader(nil, commitCID)
	blocks = car.AppendBlock(blocks, commitCID, block)
	for _, b := range nodes {
		blocks = car.AppendBlock(blocks, b.CID, b.Data)
	}
	for _, b := range recs {
		blocks = car.AppendBlock(blocks, b.CID, b.Data)
	}
	ev := &event.Commit{
		Repo:   append([]byte(nil), r.did...),
		Commit: commitCID,
		Rev:    rev,
		Blocks: blocks,
		Ops:    ops,
		Time:   syntax.AppendDatetime(nil, r.now()),
	}
	if r.head.commit != nil {
		ev.Since = append([]byte(nil), r.head.rev...)
		ev.PrevData = r.head.data.Clone()
	}
	r.head.commit, r.head.block, r.head.data, r.head.rev = commitCID, block, data, rev
	return ev, nil
}

// stage checks every write against the current tree and the rest of the
// batch, so Apply can change the tree without failing half way.
func (r *Repo) stage(writes []Write) ([]staged, error) {
	if len(writes) > event.DefaultMaxOps {
		return nil, ErrTooManyWrite
	}
	st := make([]staged, len(writes))
	seen := make(map[string]bool, len(writes))
	for i := range writes {
		w := &writes[i]
		path := []byte(w.Collection + "/" + w.RKey)
		if err := syntax.CheckRepoPath(path); err != nil || !mst.ValidKey(path) {
			return nil, fmt.Errorf("%w: %q", ErrBadPath, path)
		}
		if seen[string(path)] {
			return nil, fmt.Errorf("%w: %q", ErrDuplicate, path)
		}
		seen[string(path)] = true
		s := staged{w: w, path: path, prev: r.tree.Get(path).Clone()}
		switch w.Action {
		case mst.ActionCreate, mst.ActionUpdate:
			if len(w.Record) == 0 {
				return nil, fmt.Errorf("%w: %q", ErrNoRecord, path)
			}
			if err := dagcbor.Validate(w.Record); err != nil {
				return nil, fmt.Errorf("%w: %q: %v", ErrBadRecord, path, err)
			}
			s.cid = cid.Sum(cid.CodecDagCBOR, w.Record)
			switch {
			case w.Action == mst.ActionCreate && s.prev != nil:
				return nil, fmt.Errorf("%w: %q", ErrExists, path)
			case w.Action == mst.ActionUpdate && s.prev == nil:
				return nil, fmt.Errorf("%w: %q", ErrNotFound, path)
			case w.Action == mst.ActionUpdate && s.prev.Equal(s.cid):
				return nil, fmt.Errorf("%w: %q", ErrUnchanged, path)
			}
		case mst.ActionDelete:
			if s.prev == nil {
				return nil, fmt.Errorf("%w: %q", ErrNotFound, path)
			}
		default:
			return nil, fmt.Errorf("%w: %d", ErrAction, w.Action)
		}
		st[i] = s
	}
	return st, nil
}

// ref records one more path holding the record c. Under ForgetRecords
// nothing is counted: with no block to free, the count has no use.
func (r *Repo) ref(c cid.CID, data []byte) {
	if r.forget {
		return
	}
	if rec, ok := r.records[string(c)]; ok {
		rec.refs++
		return
	}
	r.records[string(c)] = &record{data: append([]byte(nil), data...), refs: 1}
}

// unref drops one path's hold on record c, forgetting the block when no
// path holds it any more.
func (r *Repo) unref(c cid.CID) {
	rec, ok := r.records[string(c)]
	if !ok {
		return
	}
	if rec.refs--; rec.refs <= 0 {
		delete(r.records, string(c))
	}
}

// sign encodes and signs the commit object for rev and data, returning the
// signed block and its CID.
func (r *Repo) sign(rev []byte, data cid.CID) ([]byte, cid.CID, error) {
	unsigned := AppendCommitObject(nil, r.did, rev, data, nil)
	sig, err := r.key.Sign(unsigned)
	if err != nil {
		return nil, nil, err
	}
	block := AppendCommitObject(nil, r.did, rev, data, sig)
	return block, cid.Sum(cid.CodecDagCBOR, block), nil
}

// AppendCommitObject appends the canonical version-3 commit object for did,
// rev and data with prev null. With sig nil it writes the unsigned form
// (five keys) that the signature covers; otherwise the signed block.
func AppendCommitObject(dst, did, rev []byte, data cid.CID, sig []byte) []byte {
	n := 5
	if sig != nil {
		n = 6
	}
	dst = dagcbor.AppendMapHeader(dst, n)
	dst = dagcbor.AppendText(dst, "did")
	dst = dagcbor.AppendText(dst, did)
	dst = dagcbor.AppendText(dst, "rev")
	dst = dagcbor.AppendText(dst, rev)
	if sig != nil {
		dst = dagcbor.AppendText(dst, "sig")
		dst = dagcbor.AppendBytes(dst, sig)
	}
	dst = dagcbor.AppendText(dst, "data")
	dst = dagcbor.AppendCIDLink(dst, data)
	dst = dagcbor.AppendText(dst, "prev")
	dst = dagcbor.AppendNull(dst)
	dst = dagcbor.AppendText(dst, "version")
	return dagcbor.AppendInt(dst, 3)
}
