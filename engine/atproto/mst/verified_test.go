package mst

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/atrelay/relay/engine/atproto/cid"
)

// invertOutcome runs one inversion and renders its result for comparison.
func invertOutcome(inv *Inverter, verified bool, get BlockGetter, data cid.CID, ops []Op) string {
	var (
		root cid.CID
		err  error
	)
	if verified {
		root, err = inv.InvertVerified(get, data, ops)
	} else {
		root, err = inv.Invert(get, data, ops)
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return "root: " + root.String()
}

// Over the whole capture, and with ops edited so that the forward check
// and the undo fail in every way the capture allows, InvertVerified gives
// exactly Invert's answer when the blocks are genuine: skipping the block
// hashes and taking op heights from loaded nodes changes no outcome.
func TestInvertVerifiedAgrees(t *testing.T) {
	commits, err := loadCapture()
	if err != nil {
		t.Fatal(err)
	}
	var a, b Inverter
	other := cid.Sum(cid.CodecDagCBOR, []byte("other"))
	compared := 0
	for i := range commits {
		c := &commits[i]
		get := mapGetter(c.blocks)
		variants := [][]Op{c.ops}
		if len(c.ops) > 0 {
			variants = append(variants,
				withOps(c, func(o []Op) []Op { return o[1:] }),
				withOps(c, func(o []Op) []Op {
					if o[0].CID != nil {
						o[0].CID = other
					}
					return o
				}),
				withOps(c, func(o []Op) []Op {
					// A create of a key the tree does not hold: the lookup
					// falls back to hashing the path.
					return append(o, Op{Action: ActionCreate, Path: []byte("zz.fallback/key"), CID: other})
				}),
				withOps(c, func(o []Op) []Op {
					o[0] = Op{Action: ActionDelete, Path: o[0].Path, Prev: other}
					return o
				}),
			)
		}
		for j, ops := range variants {
			want := invertOutcome(&a, false, get, c.data, ops)
			got := invertOutcome(&b, true, get, c.data, ops)
			if got != want {
				t.Fatalf("host %d seq %d variant %d: InvertVerified %s, Invert %s", c.host, c.seq, j, got, want)
			}
			compared++
		}
		// Without any one node block both agree too (missing block, or
		// success when the block was not needed).
		for k, blk := range c.blocks {
			if !bytes.HasPrefix(blk, []byte("\xa2\x61\x65")) {
				continue
			}
			less := maps(c.blocks)
			delete(less, k)
			want := invertOutcome(&a, false, mapGetter(less), c.data, c.ops)
			got := invertOutcome(&b, true, mapGetter(less), c.data, c.ops)
			if got != want {
				t.Fatalf("host %d seq %d without %s: InvertVerified %s, Invert %s", c.host, c.seq, cid.CID(k), got, want)
			}
			compared++
		}
	}
	if compared < len(commits) {
		t.Fatalf("compared only %d outcomes for %d commits", compared, len(commits))
	}
}

// InvertVerified trusts only the hashes: a getter that returns some other
// block under a node's CID still has that block decoded and checked
// against its position, as Invert would after its hash check.
func TestInvertVerifiedChecksNodes(t *testing.T) {
	c := findCommit(t, 0, 4424)
	var inv Inverter
	var nodes [][]byte
	for _, b := range c.blocks {
		var nd NodeData
		if _, err := DecodeNode(&nd, b, nil); err == nil {
			nodes = append(nodes, b)
		}
	}
	if len(nodes) < 3 {
		t.Fatalf("only %d node blocks", len(nodes))
	}
	for k, b := range c.blocks {
		var nd NodeData
		if _, err := DecodeNode(&nd, b, nil); err != nil {
			continue
		}
		bad := maps(c.blocks)
		bad[k] = append(bytes.Clone(b), 0)
		if _, err := inv.InvertVerified(mapGetter(bad), c.data, c.ops); !errors.Is(err, ErrNodeEncoding) {
			t.Errorf("trailing byte in %s: %v, want ErrNodeEncoding", cid.CID(k), err)
		}
		for _, swap := range nodes {
			if bytes.Equal(swap, b) {
				continue
			}
			bad[k] = swap
			if _, err := inv.InvertVerified(mapGetter(bad), c.data, c.ops); err == nil {
				t.Errorf("node %s replaced by another node block: accepted", cid.CID(k))
			}
		}
	}
	// The inverter is reusable after failures.
	if err := inv.CheckVerified(mapGetter(c.blocks), c.data, c.prevData, c.ops); err != nil {
		t.Fatal(err)
	}
	if err := inv.CheckVerified(mapGetter(c.blocks), c.data, cid.Sum(cid.CodecDagCBOR, []byte("x")), c.ops); !errors.Is(err, ErrInversionMismatch) {
		t.Fatalf("wrong prevData: %v", err)
	}
}

func TestInvertVerifiedAllocs(t *testing.T) {
	var inv Inverter
	for _, c := range []*captureCommit{typicalCommit(t), findCommit(t, 0, 4424), findCommit(t, 1, 6097), findCommit(t, 0, 337)} {
		t.Run(fmt.Sprintf("%d-%d", c.host, c.seq), func(t *testing.T) {
			get := mapGetter(c.blocks)
			if err := inv.CheckVerified(get, c.data, c.prevData, c.ops); err != nil {
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(50, func() {
				if err := inv.CheckVerified(get, c.data, c.prevData, c.ops); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocs per commit, want 0", allocs)
			}
		})
	}
}
