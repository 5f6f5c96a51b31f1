package mst

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/atrelay/relay/engine/atproto/cid"
)

// findCommit returns the capture commit of host/seq.
func findCommit(t testing.TB, host int, seq int64) *captureCommit {
	t.Helper()
	commits, err := loadCapture()
	if err != nil {
		t.Fatal(err)
	}
	for i := range commits {
		if commits[i].host == host && commits[i].seq == seq {
			return &commits[i]
		}
	}
	t.Fatalf("host %d seq %d not in capture", host, seq)
	return nil
}

// typicalCommit picks a single-create commit whose block count is the
// capture's median: the everyday case the relay validates.
func typicalCommit(t testing.TB) *captureCommit {
	commits, err := loadCapture()
	if err != nil {
		t.Fatal(err)
	}
	sizes := make([]int, len(commits))
	for i := range commits {
		sizes[i] = len(commits[i].blocks)
	}
	slices.Sort(sizes)
	median := sizes[len(sizes)/2]
	for i := range commits {
		c := &commits[i]
		if len(c.ops) == 1 && c.ops[0].Action == ActionCreate && len(c.blocks) == median {
			return c
		}
	}
	t.Fatal("no typical commit")
	return nil
}

func withOps(c *captureCommit, edit func([]Op) []Op) []Op {
	ops := slices.Clone(c.ops)
	return edit(ops)
}

func TestInvertRejects(t *testing.T) {
	c := findCommit(t, 0, 4424) // 3 creates + 1 delete, root 2→6
	var inv Inverter
	get := mapGetter(c.blocks)
	other := cid.Sum(cid.CodecDagCBOR, []byte("other"))
	f := func(name string, get BlockGetter, data, prevData cid.CID, ops []Op, want error) {
		t.Helper()
		err := inv.Check(get, data, prevData, ops)
		if !errors.Is(err, want) {
			t.Errorf("%s: err = %v, want %v", name, err, want)
		}
	}
	f("valid", get, c.data, c.prevData, c.ops, nil)
	f("wrong prevData", get, c.data, other, c.ops, ErrInversionMismatch)
	f("too many ops", get, c.data, c.prevData, make([]Op, MaxOps+1), ErrTooManyOps)
	f("dropped op", get, c.data, c.prevData, c.ops[1:], ErrInversionMismatch)
	f("duplicate path", get, c.data, c.prevData, withOps(c, func(o []Op) []Op {
		return append(o, o[0])
	}), ErrDuplicatePath)
	var create, del int
	for i, o := range c.ops {
		switch o.Action {
		case ActionCreate:
			create = i
		case ActionDelete:
			del = i
		}
	}
	f("forward mismatch", get, c.data, c.prevData, withOps(c, func(o []Op) []Op {
		o[create].CID = other
		return o
	}), ErrForwardMismatch)
	f("create as update", get, c.data, c.prevData, withOps(c, func(o []Op) []Op {
		o[create].Action, o[create].Prev = ActionUpdate, other
		return o
	}), ErrInversionMismatch)
	f("create as delete", get, c.data, c.prevData, withOps(c, func(o []Op) []Op {
		o[create] = Op{Action: ActionDelete, Path: o[create].Path, Prev: o[create].CID}
		return o
	}), ErrUndoDelete)
	f("delete of absent key has cid", get, c.data, c.prevData, withOps(c, func(o []Op) []Op {
		o[del].CID = other
		return o
	}), ErrOpInvalid)
	f("create with prev", get, c.data, c.prevData, withOps(c, func(o []Op) []Op {
		o[create].Prev = other
		return o
	}), ErrOpInvalid)
	f("no action", get, c.data, c.prevData, withOps(c, func(o []Op) []Op {
		o[create].Action = 0
		return o
	}), ErrOpInvalid)
	f("bad path", get, c.data, c.prevData, withOps(c, func(o []Op) []Op {
		o[create].Path = []byte("no-slash")
		return o
	}), ErrKeyInvalid)
	f("data not blessed", get, cid.Sum(cid.CodecRaw, []byte("x")), c.prevData, c.ops, ErrLinkNotBlessed)
	f("data absent", get, other, c.prevData, c.ops, ErrMissingBlock)

	// Every MST node block of this commit is needed, and a corrupt one is
	// caught before use.
	var w Walker
	for k, b := range c.blocks {
		var nd NodeData
		if _, err := DecodeNode(&nd, b, nil); err != nil {
			continue // commit or record block
		}
		less := maps(c.blocks)
		delete(less, k)
		if _, err := inv.Invert(mapGetter(less), c.data, c.ops); !errors.Is(err, ErrMissingBlock) {
			t.Errorf("without node %s: %v", cid.CID(k), err)
		}
		less[k] = append(bytes.Clone(b), 0)
		if _, err := inv.Invert(mapGetter(less), c.data, c.ops); !errors.Is(err, ErrBlockHash) {
			t.Errorf("corrupt node %s: %v", cid.CID(k), err)
		}
	}
	// A partial tree is not a complete one.
	if err := w.Walk(get, c.data, func([]byte, cid.CID) error { return nil }); !errors.Is(err, ErrMissingBlock) {
		t.Errorf("Walk of a commit slice: %v", err)
	}
	// The inverter is reusable after failures.
	f("valid again", get, c.data, c.prevData, c.ops, nil)
}

func TestInvertAllocs(t *testing.T) {
	var inv Inverter
	for _, c := range []*captureCommit{typicalCommit(t), findCommit(t, 0, 4424), findCommit(t, 1, 6097), findCommit(t, 0, 337)} {
		t.Run(fmt.Sprintf("%d-%d", c.host, c.seq), func(t *testing.T) {
			get := mapGetter(c.blocks)
			if err := inv.Check(get, c.data, c.prevData, c.ops); err != nil {
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(50, func() {
				if err := inv.Check(get, c.data, c.prevData, c.ops); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocs per commit, want 0", allocs)
			}
		})
	}
}

func TestDecodeNodeAllocs(t *testing.T) {
	c := findCommit(t, 0, 4424)
	var nd NodeData
	var keys []byte
	b := c.blocks[string(c.data)]
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if keys, err = DecodeNode(&nd, b, keys[:0]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per decode, want 0", allocs)
	}
}

// TestCaptureNodesRoundTrip re-encodes every MST node of the capture.
func TestCaptureNodesRoundTrip(t *testing.T) {
	commits, err := loadCapture()
	if err != nil {
		t.Fatal(err)
	}
	var nd NodeData
	var keys, out []byte
	n := 0
	for i := range commits {
		for _, b := range commits[i].blocks {
			if len(b) == 0 || b[0] != 0xa2 || !bytes.HasPrefix(b, []byte{0xa2, 0x61, 'e'}) {
				continue
			}
			if keys, err = DecodeNode(&nd, b, keys[:0]); err != nil {
				t.Fatalf("capture node: %v", err)
			}
			if out = AppendNode(out[:0], &nd); !bytes.Equal(out, b) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", out, b)
			}
			n++
		}
	}
	if n < 15323 {
		t.Fatalf("only %d nodes", n)
	}
}
