package mst

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/internal/fixtures"
)

// Fixtures: bluesky-social/atproto-interop-tests @ 056e5741 (interop/mst,
// interop/firehose), read from internal/testdata.

func TestKeyHeightsFixture(t *testing.T) {
	var cases []struct {
		Key    string `json:"key"`
		Height int    `json:"height"`
	}
	if err := json.Unmarshal(fixtures.Read(t, "fixtures/interop/mst/key_heights.json"), &cases); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Key, func(t *testing.T) {
			if got := Height([]byte(c.Key)); got != c.Height {
				t.Fatalf("Height(%q) = %d, want %d", c.Key, got, c.Height)
			}
			if c.Key == "" && ValidKey(nil) {
				t.Fatal("empty key accepted")
			}
		})
	}
}

func TestCommonPrefixFixture(t *testing.T) {
	var cases []struct {
		Left  string `json:"left"`
		Right string `json:"right"`
		Len   int    `json:"len"`
	}
	if err := json.Unmarshal(fixtures.Read(t, "fixtures/interop/mst/common_prefix.json"), &cases); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Left+"|"+c.Right, func(t *testing.T) {
			if got := commonPrefix([]byte(c.Left), []byte(c.Right)); got != c.Len {
				t.Fatalf("commonPrefix(%q, %q) = %d, want %d", c.Left, c.Right, got, c.Len)
			}
		})
	}
}

func TestExampleKeysFixture(t *testing.T) {
	sc := bufio.NewScanner(bytes.NewReader(fixtures.Read(t, "fixtures/interop/mst/example_keys.txt")))
	n := 0
	for sc.Scan() {
		key := sc.Text()
		if key == "" {
			continue
		}
		n++
		want, err := strconv.Atoi(key[1:2])
		if err != nil {
			t.Fatalf("bad fixture line %q", key)
		}
		if got := Height([]byte(key)); got != want {
			t.Errorf("Height(%q) = %d, want %d", key, got, want)
		}
		if !ValidKey([]byte(key)) {
			t.Errorf("ValidKey(%q) = false", key)
		}
	}
	if n != 156 {
		t.Fatalf("read %d keys, want 156", n)
	}
}

type proofCase struct {
	Comment          string   `json:"comment"`
	LeafValue        string   `json:"leafValue"`
	Keys             []string `json:"keys"`
	Adds             []string `json:"adds"`
	Dels             []string `json:"dels"`
	RootBeforeCommit string   `json:"rootBeforeCommit"`
	RootAfterCommit  string   `json:"rootAfterCommit"`
	BlocksInProof    []string `json:"blocksInProof"`
}

func TestCommitProofFixtures(t *testing.T) {
	var cases []proofCase
	if err := json.Unmarshal(fixtures.Read(t, "fixtures/interop/firehose/commit-proof-fixtures.json"), &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) != 6 {
		t.Fatalf("%d cases, want 6", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Comment, func(t *testing.T) {
			leaf := cid.MustDecode(c.LeafValue)
			tree := NewTree()
			for _, k := range c.Keys {
				if _, err := tree.Insert([]byte(k), leaf); err != nil {
					t.Fatal(err)
				}
			}
			all := map[string][]byte{} // every node block of both trees
			collect := func(c cid.CID, b []byte) { all[string(c)] = bytes.Clone(b) }
			if got := tree.Commit(collect).String(); got != c.RootBeforeCommit {
				t.Fatalf("root before = %s, want %s", got, c.RootBeforeCommit)
			}
			for _, k := range c.Dels {
				if old, err := tree.Delete([]byte(k)); err != nil || old == nil {
					t.Fatalf("delete %s: %v %v", k, old, err)
				}
			}
			for _, k := range c.Adds {
				if _, err := tree.Insert([]byte(k), leaf); err != nil {
					t.Fatal(err)
				}
			}
			proof := map[string][]byte{}
			var got []string
			after := tree.Commit(func(c cid.CID, b []byte) {
				proof[string(c)] = bytes.Clone(b)
				got = append(got, c.String())
			})
			if after.String() != c.RootAfterCommit {
				t.Fatalf("root after = %s, want %s", after, c.RootAfterCommit)
			}
			want := slices.Clone(c.BlocksInProof)
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("proof blocks:\n got %v\nwant %v", got, want)
			}

			// Consumer side: only the fixture's blocksInProof.
			only := map[string][]byte{}
			for _, s := range c.BlocksInProof {
				b, ok := proof[string(cid.MustDecode(s))]
				if !ok {
					t.Fatalf("proof block %s not produced", s)
				}
				only[string(cid.MustDecode(s))] = b
			}
			var ops []Op
			for _, k := range c.Adds {
				ops = append(ops, Op{Action: ActionCreate, Path: []byte(k), CID: leaf})
			}
			for _, k := range c.Dels {
				ops = append(ops, Op{Action: ActionDelete, Path: []byte(k), Prev: leaf})
			}
			var inv Inverter
			err := inv.Check(mapGetter(only), after, cid.MustDecode(c.RootBeforeCommit), ops)
			if err != nil {
				t.Fatalf("inversion: %v", err)
			}
			// Dropping a proof block may make inversion impossible, but
			// it must never produce a wrong root: either the right answer
			// or ErrMissingBlock.
			missing := 0
			for _, s := range c.BlocksInProof {
				less := maps(only)
				delete(less, string(cid.MustDecode(s)))
				prev, err := inv.Invert(mapGetter(less), after, ops)
				switch {
				case errors.Is(err, ErrMissingBlock):
					missing++
				case err != nil:
					t.Errorf("without %s: %v", s, err)
				case prev.String() != c.RootBeforeCommit:
					t.Errorf("without %s: wrong root %s", s, prev)
				}
			}
			if missing == 0 {
				t.Error("no proof block was needed")
			}
		})
	}
}

func maps(m map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func mapGetter(m map[string][]byte) BlockGetter {
	return func(c cid.CID) ([]byte, bool) {
		b, ok := m[string(c)]
		return b, ok
	}
}

// TestEmptyNodeConstant pins the empty-tree encoding and CID.
func TestEmptyNodeConstant(t *testing.T) {
	if got := cid.Sum(cid.CodecDagCBOR, []byte(emptyNode)).String(); got != "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm" {
		t.Fatalf("empty node CID = %s", got)
	}
	if !strings.HasPrefix(emptyRootCID, "\x01\x71\x12\x20") || cid.CID(emptyRootCID).String() != "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm" {
		t.Fatal("emptyRootCID constant wrong")
	}
	if got := NewTree().Root().String(); got != "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm" {
		t.Fatalf("empty tree root = %s", got)
	}
	get := mapGetter(map[string][]byte{emptyRootCID: []byte(emptyNode)})
	var w Walker
	if err := w.Walk(get, cid.CID(emptyRootCID), func([]byte, cid.CID) error {
		t.Fatal("empty tree has a key")
		return nil
	}); err != nil {
		t.Fatalf("Walk(empty) = %v", err)
	}
	if tr, err := LoadTree(get, cid.CID(emptyRootCID)); err != nil || tr.Len() != 0 {
		t.Fatalf("LoadTree(empty) = %v, %v", tr, err)
	}
}
