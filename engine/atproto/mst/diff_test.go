package mst

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	imst "github.com/bluesky-social/indigo/atproto/repo/mst"
	blocks "github.com/ipfs/go-block-format"
	gocid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"

	"github.com/atrelay/relay/engine/atproto/cid"
)

// Differential tests against indigo's atproto/repo/mst (the reference Go
// implementation, test-only import).

// blockSource serves blocks to indigo; absent blocks are ipld.ErrNotFound
// so indigo keeps them as stubs.
type blockSource map[string][]byte

func (s blockSource) Get(_ context.Context, c gocid.Cid) (blocks.Block, error) {
	b, ok := s[string(c.Bytes())]
	if !ok {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	return blocks.NewBlockWithCid(b, c)
}

const tidAlphabet = "234567abcdefghijklmnopqrstuvwxyz"

// randKey returns a repo path resembling real traffic.
func randKey(r *rand.Rand) []byte {
	cols := [...]string{"app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.graph.follow", "app.bsky.actor.profile"}
	k := []byte(cols[r.IntN(len(cols))] + "/")
	for range 13 {
		k = append(k, tidAlphabet[r.IntN(32)])
	}
	return k
}

func randValue(r *rand.Rand) cid.CID {
	var b [8]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return cid.Sum(cid.CodecDagCBOR, b[:])
}

func toGo(t testing.TB, c cid.CID) gocid.Cid {
	g, err := gocid.Cast(c)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// batchOp is one change in a differential batch.
type batchOp struct {
	key  []byte
	val  cid.CID // nil: delete
	prev cid.CID // value before the batch, nil if absent
}

// runDifferential applies nBatches random batches to a Tree and to
// indigo's tree, comparing roots, and inverts every batch from its proof
// blocks alone with both Inverter and indigo.
func runDifferential(t *testing.T, seed uint64, nBatches int) {
	r := rand.New(rand.NewPCG(seed, 0))
	tree := NewTree()
	ref := imst.NewEmptyTree()
	var keys [][]byte // every key ever used, to make updates and deletes likely
	model := map[string]cid.CID{}
	var inv Inverter
	before := tree.Commit(nil)
	for b := range nBatches {
		n := 1 + r.IntN(6)
		var batch []batchOp
		touched := map[string]bool{}
		for range n {
			var k []byte
			if len(keys) > 0 && r.IntN(3) > 0 {
				k = keys[r.IntN(len(keys))]
			} else {
				k = randKey(r)
				keys = append(keys, k)
			}
			if touched[string(k)] {
				continue
			}
			touched[string(k)] = true
			op := batchOp{key: k, prev: model[string(k)]}
			if op.prev == nil || r.IntN(2) == 0 {
				op.val = randValue(r)
			}
			if op.prev == nil && op.val == nil {
				continue
			}
			batch = append(batch, op)
		}
		var ops []Op
		for _, op := range batch {
			if op.val != nil {
				if _, err := tree.Insert(op.key, op.val); err != nil {
					t.Fatal(err)
				}
				if _, err := ref.Insert(op.key, toGo(t, op.val)); err != nil {
					t.Fatal(err)
				}
				model[string(op.key)] = op.val
				if op.prev == nil {
					ops = append(ops, Op{Action: ActionCreate, Path: op.key, CID: op.val})
				} else {
					ops = append(ops, Op{Action: ActionUpdate, Path: op.key, CID: op.val, Prev: op.prev})
				}
			} else {
				if _, err := tree.Delete(op.key); err != nil {
					t.Fatal(err)
				}
				if _, err := ref.Remove(op.key); err != nil {
					t.Fatal(err)
				}
				delete(model, string(op.key))
				ops = append(ops, Op{Action: ActionDelete, Path: op.key, Prev: op.prev})
			}
		}
		proof := blockSource{}
		after := tree.Commit(func(c cid.CID, blk []byte) { proof[string(c)] = bytes.Clone(blk) })
		refRoot, err := ref.RootCID()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(refRoot.Bytes(), after) {
			t.Fatalf("batch %d: root %s, indigo %s", b, after, refRoot)
		}
		if tree.Len() != len(model) {
			t.Fatalf("batch %d: Len %d, want %d", b, tree.Len(), len(model))
		}
		if len(ops) == 0 {
			before = after
			continue
		}
		prev, err := inv.Invert(mapGetter(proof), after, ops)
		if err != nil {
			t.Fatalf("batch %d: invert %v: %v", b, ops, err)
		}
		if !prev.Equal(before) {
			t.Fatalf("batch %d: inverted to %s, want %s", b, prev, before)
		}
		refInvert(t, proof, after, ops, before)
		before = after
	}
	// The tree agrees with the model pair by pair.
	var got []string
	for k, v := range tree.All() {
		if !model[string(k)].Equal(v) {
			t.Fatalf("All: %s has wrong value", k)
		}
		got = append(got, string(k))
	}
	if len(got) != len(model) || !slices.IsSorted(got) {
		t.Fatalf("All: %d keys (sorted %v), want %d", len(got), slices.IsSorted(got), len(model))
	}
}

// refInvert checks that indigo, given only our proof blocks, inverts the
// ops to the same previous root (indigo's own op order: deletes first).
func refInvert(t *testing.T, proof blockSource, after cid.CID, ops []Op, before cid.CID) {
	t.Helper()
	rt, err := imst.LoadTreeFromStore(context.Background(), proof, toGo(t, after))
	if err != nil {
		t.Fatalf("indigo load: %v", err)
	}
	sorted := slices.Clone(ops)
	slices.SortFunc(sorted, func(a, b Op) int {
		if da, db := a.Action == ActionDelete, b.Action == ActionDelete; da != db {
			if da {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.Path, b.Path)
	})
	for _, op := range sorted {
		switch op.Action {
		case ActionCreate:
			_, err = rt.Remove(op.Path)
		default:
			_, err = rt.Insert(op.Path, toGo(t, op.Prev))
		}
		if err != nil {
			t.Fatalf("indigo invert %s %s: %v", op.Action, op.Path, err)
		}
	}
	got, err := rt.RootCID()
	if err != nil {
		t.Fatalf("indigo root: %v", err)
	}
	if !bytes.Equal(got.Bytes(), before) {
		t.Fatalf("indigo inverted to %s, want %s", got, before)
	}
}

func TestDifferentialIndigo(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runDifferential(t, seed, 1500) })
	}
}

// TestIndigoDiffBlocksSubset checks that indigo's notion of a commit's
// blocks (the dirty nodes WriteDiffBlocks writes) is contained in ours.
func TestIndigoDiffBlocksSubset(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	tree := NewTree()
	var keys [][]byte
	for range 400 {
		k := randKey(r)
		keys = append(keys, k)
		if _, err := tree.Insert(k, randValue(r)); err != nil {
			t.Fatal(err)
		}
	}
	all := blockSource{}
	root := tree.Commit(func(c cid.CID, b []byte) { all[string(c)] = bytes.Clone(b) })
	for round := range 200 {
		rt, err := imst.LoadTreeFromStore(context.Background(), all, toGo(t, root))
		if err != nil {
			t.Fatal(err)
		}
		k := keys[r.IntN(len(keys))]
		if tree.Get(k) != nil && r.IntN(2) == 0 {
			_, err = tree.Delete(k)
			if err == nil {
				_, err = rt.Remove(k)
			}
		} else {
			v := randValue(r)
			_, err = tree.Insert(k, v)
			if err == nil {
				_, err = rt.Insert(k, toGo(t, v))
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		ours := blockSource{}
		root = tree.Commit(func(c cid.CID, b []byte) { ours[string(c)] = bytes.Clone(b); all[string(c)] = bytes.Clone(b) })
		theirs := &recordingStore{}
		if _, err := rt.WriteDiffBlocks(context.Background(), theirs); err != nil {
			t.Fatal(err)
		}
		for _, c := range theirs.cids {
			if _, ok := ours[string(c)]; !ok {
				t.Fatalf("round %d: indigo diff block %s missing from ours", round, cid.CID(c))
			}
		}
	}
}

// errUnused marks blockstore methods WriteDiffBlocks never calls.
var errUnused = errors.New("unused in test")

// recordingStore is the part of a blockstore WriteDiffBlocks uses: Put.
type recordingStore struct{ cids [][]byte }

func (s *recordingStore) Put(_ context.Context, b blocks.Block) error {
	s.cids = append(s.cids, b.Cid().Bytes())
	return nil
}
func (s *recordingStore) PutMany(_ context.Context, bs []blocks.Block) error {
	for _, b := range bs {
		s.cids = append(s.cids, b.Cid().Bytes())
	}
	return nil
}
func (s *recordingStore) DeleteBlock(context.Context, gocid.Cid) error { return errUnused }
func (s *recordingStore) Has(context.Context, gocid.Cid) (bool, error) { return false, nil }
func (s *recordingStore) Get(_ context.Context, c gocid.Cid) (blocks.Block, error) {
	return nil, ipld.ErrNotFound{Cid: c}
}
func (s *recordingStore) GetSize(context.Context, gocid.Cid) (int, error) { return 0, errUnused }
func (s *recordingStore) AllKeysChan(context.Context) (<-chan gocid.Cid, error) {
	return nil, errUnused
}
func (s *recordingStore) HashOnRead(bool) {}
