package mst

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/internal/fixtures"
	"github.com/fxamacker/cbor/v2"
)

// carRoot returns roots[0] of a CAR (test-only header read).
func carRoot(t *testing.T, car []byte) cid.CID {
	hl, n := binary.Uvarint(car)
	var hdr struct {
		Roots []cborLink `cbor:"roots"`
	}
	if err := cbor.Unmarshal(car[n:n+int(hl)], &hdr); err != nil || len(hdr.Roots) == 0 {
		t.Fatalf("CAR header: %v", err)
	}
	return cid.CID(hdr.Roots[0])
}

// Fixture: bluesky-social/indigo @ 4b983a7 testing/testdata (full repo
// exports).
func TestWalkFullRepos(t *testing.T) {
	for _, name := range []string{"fakermaker.repo.car", "bafyreieovfuizojpw3zresz7sx3nk4trm2by23pt5rxbey3jme4uo5ogiu.car"} {
		t.Run(name, func(t *testing.T) {
			car := fixtures.Read(t, "fixtures/indigo/testing/testdata/"+name)
			blocks, err := splitCAR(car)
			if err != nil {
				t.Fatal(err)
			}
			data, err := commitData(blocks[string(carRoot(t, car))])
			if err != nil {
				t.Fatal(err)
			}
			var w Walker
			var keys []string
			err = w.Walk(mapGetter(blocks), data, func(k []byte, v cid.CID) error {
				if _, ok := blocks[string(v)]; !ok {
					t.Errorf("record %s of %s absent from export", v, k)
				}
				keys = append(keys, string(k))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) == 0 || !slices.IsSorted(keys) {
				t.Fatalf("%d keys, sorted %v", len(keys), slices.IsSorted(keys))
			}
			t.Logf("%d keys", len(keys))
			tree, err := LoadTree(mapGetter(blocks), data)
			if err != nil {
				t.Fatal(err)
			}
			if !tree.Root().Equal(data) || tree.Len() != len(keys) {
				t.Fatalf("LoadTree root %s len %d, want %s %d", tree.Root(), tree.Len(), data, len(keys))
			}
			// Every node is needed: dropping any one is ErrMissingBlock;
			// corrupting any one is ErrBlockHash.
			var nodes []string
			_ = tree.Commit(nil)
			full := NewTree()
			for k, v := range tree.All() {
				if _, err := full.Insert(k, v); err != nil {
					t.Fatal(err)
				}
			}
			full.Commit(func(c cid.CID, _ []byte) { nodes = append(nodes, string(c)) })
			for _, c := range nodes {
				orig := blocks[c]
				delete(blocks, c)
				if err := w.Walk(mapGetter(blocks), data, func([]byte, cid.CID) error { return nil }); !errors.Is(err, ErrMissingBlock) {
					t.Fatalf("without %s: %v", cid.CID(c), err)
				}
				blocks[c] = append(bytes.Clone(orig), 0)
				if err := w.Walk(mapGetter(blocks), data, func([]byte, cid.CID) error { return nil }); !errors.Is(err, ErrBlockHash) {
					t.Fatalf("corrupt %s: %v", cid.CID(c), err)
				}
				blocks[c] = orig
			}
		})
	}
}

func TestBuildSorted(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 0))
	ref := NewTree()
	for range 2000 {
		if _, err := ref.Insert(randKey(r), randValue(r)); err != nil {
			t.Fatal(err)
		}
	}
	built, err := BuildSorted(ref.All())
	if err != nil {
		t.Fatal(err)
	}
	if !built.Root().Equal(ref.Root()) || built.Len() != ref.Len() {
		t.Fatal("BuildSorted differs from inserts")
	}
	// The build counts as committed: a later single create proves only
	// its own neighbourhood, not the whole tree.
	k := randKey(r)
	if _, err := built.Insert(k, randValue(r)); err != nil {
		t.Fatal(err)
	}
	n := 0
	built.Commit(func(cid.CID, []byte) { n++ })
	if n == 0 || n > 20 {
		t.Fatalf("proof of one create after build has %d blocks", n)
	}
	unsorted := func(yield func([]byte, cid.CID) bool) {
		_ = yield([]byte("b.c/d"), testVal) && yield([]byte("a.c/d"), testVal)
	}
	if _, err := BuildSorted(unsorted); !errors.Is(err, ErrUnsorted) {
		t.Fatalf("unsorted input: %v", err)
	}
}

func TestTreeRejects(t *testing.T) {
	tr := NewTree()
	if _, err := tr.Insert([]byte("nope"), testVal); !errors.Is(err, ErrKeyInvalid) {
		t.Errorf("bad key: %v", err)
	}
	if _, err := tr.Insert([]byte("a.b/c"), nil); !errors.Is(err, ErrValueMissing) {
		t.Errorf("nil value: %v", err)
	}
	if _, err := tr.Insert([]byte("a.b/c"), cid.CID{2, 1}); !errors.Is(err, ErrBadCID) {
		t.Errorf("bad value: %v", err)
	}
	if old, err := tr.Delete([]byte("a.b/c")); old != nil || err != nil {
		t.Errorf("delete absent: %v %v", old, err)
	}
	// Insert then delete in one batch leaves the tree and proof unchanged.
	if _, err := tr.Insert([]byte("a.b/c"), testVal); err != nil {
		t.Fatal(err)
	}
	root := tr.Commit(nil)
	if _, err := tr.Insert([]byte("a.b/d"), testVal); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Delete([]byte("a.b/d")); err != nil {
		t.Fatal(err)
	}
	if got := tr.Commit(nil); !got.Equal(root) {
		t.Fatalf("insert+delete changed root %s → %s", root, got)
	}
}
