package mst

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/atrelay/relay/engine/atproto/cid"
)

// FuzzNodeDecode: no input panics, and whatever decodes is canonical, so
// re-encoding gives back the input exactly.
func FuzzNodeDecode(f *testing.F) {
	f.Add([]byte(emptyNode))
	f.Add(rawNode(nil, rawEnt{k: "a.b/c", v: testVal}))
	f.Add(rawNode(testNode, rawEnt{k: "a.b/c1", v: testVal, t: testNode}, rawEnt{k: "2", p: 5, v: testRaw}))
	f.Add(rawNode(nil, rawEnt{k: "a.b/c", v: testVal}, rawEnt{k: "/d", p: 3, v: testVal}))
	f.Add([]byte{0xa2, 0x61, 'e', 0x9a, 0x00, 0x01, 0x00, 0x00, 0x61, 'l', 0xf6})
	f.Fuzz(func(t *testing.T, b []byte) {
		var nd NodeData
		if _, err := DecodeNode(&nd, b, nil); err != nil {
			return
		}
		if got := AppendNode(nil, &nd); !bytes.Equal(got, b) {
			t.Fatalf("decoded non-canonical input:\n in  %x\n out %x", b, got)
		}
		for i := range nd.Entries {
			_ = checkNode(&nd, Height(nd.Entries[i].Key), nil, nil, i == 0)
		}
	})
}

// fuzzKey names key i of a small key space spread over several layers.
func fuzzKey(i byte) []byte {
	return fmt.Appendf(nil, "app.bsky.feed.post/k%03d", i)
}

// FuzzInvertRoundTrip: a tree of seed keys, then a batch of ops driven by
// the input; the batch's proof blocks alone must invert it to the old
// root, and the new root must equal a fresh build of the same pairs.
func FuzzInvertRoundTrip(f *testing.F) {
	f.Add(byte(40), []byte{0, 3, 1, 7, 2, 9})
	f.Add(byte(0), []byte{0, 1})
	f.Add(byte(200), []byte{1, 5, 1, 6, 1, 7, 1, 8, 0, 250})
	f.Add(byte(120), []byte{2, 0, 2, 1, 2, 2, 2, 3, 1, 4, 0, 199})
	f.Fuzz(func(t *testing.T, seed byte, prog []byte) {
		if len(prog) > 2*MaxOps {
			prog = prog[:2*MaxOps]
		}
		tree := NewTree()
		model := map[string]cid.CID{}
		for i := range seed {
			v := cid.Sum(cid.CodecDagCBOR, []byte{i})
			if _, err := tree.Insert(fuzzKey(i), v); err != nil {
				t.Fatal(err)
			}
			model[string(fuzzKey(i))] = v
		}
		before := tree.Commit(nil)
		var ops []Op
		seen := map[string]bool{}
		for i := 0; i+1 < len(prog); i += 2 {
			k := fuzzKey(prog[i+1])
			if seen[string(k)] {
				continue
			}
			seen[string(k)] = true
			prev := model[string(k)]
			v := cid.Sum(cid.CodecDagCBOR, []byte{prog[i], prog[i+1], 1})
			switch {
			case prog[i]%3 == 0 && prev != nil:
				if _, err := tree.Delete(k); err != nil {
					t.Fatal(err)
				}
				delete(model, string(k))
				ops = append(ops, Op{Action: ActionDelete, Path: k, Prev: prev})
			case prev != nil:
				if _, err := tree.Insert(k, v); err != nil {
					t.Fatal(err)
				}
				model[string(k)] = v
				ops = append(ops, Op{Action: ActionUpdate, Path: k, CID: v, Prev: prev})
			default:
				if _, err := tree.Insert(k, v); err != nil {
					t.Fatal(err)
				}
				model[string(k)] = v
				ops = append(ops, Op{Action: ActionCreate, Path: k, CID: v})
			}
		}
		proof := map[string][]byte{}
		after := tree.Commit(func(c cid.CID, b []byte) { proof[string(c)] = bytes.Clone(b) })
		keys := make([]string, 0, len(model))
		for k := range model {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fresh, err := BuildSorted(func(yield func([]byte, cid.CID) bool) {
			for _, k := range keys {
				if !yield([]byte(k), model[k]) {
					return
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if !fresh.Root().Equal(after) {
			t.Fatalf("incremental root %s, fresh build %s", after, fresh.Root())
		}
		if len(ops) == 0 {
			return
		}
		var inv Inverter
		prev, err := inv.Invert(mapGetter(proof), after, ops)
		if err != nil {
			t.Fatalf("invert: %v", err)
		}
		if !prev.Equal(before) {
			t.Fatalf("inverted to %s, want %s", prev, before)
		}
		// The proof blocks are hashed by Commit itself, so the verified
		// path must reach the same root (the forward lookup takes heights
		// from the loaded nodes there).
		var vinv Inverter
		vprev, err := vinv.InvertVerified(mapGetter(proof), after, ops)
		if err != nil || !vprev.Equal(before) {
			t.Fatalf("InvertVerified: %s, %v; want %s", vprev, err, before)
		}
	})
}
