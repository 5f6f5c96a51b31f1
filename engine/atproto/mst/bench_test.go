package mst

import (
	"math/rand/v2"
	"testing"

	"github.com/atrelay/relay/engine/atproto/cid"
)

func benchInvert(b *testing.B, c *captureCommit) {
	var inv Inverter
	get := mapGetter(c.blocks)
	b.ReportAllocs()
	for b.Loop() {
		if err := inv.Check(get, c.data, c.prevData, c.ops); err != nil {
			b.Fatal(err)
		}
	}
}

// benchInvertVerified is benchInvert on the relay's path: blocks already
// hash-verified by the CAR reader.
func benchInvertVerified(b *testing.B, c *captureCommit) {
	var inv Inverter
	get := mapGetter(c.blocks)
	b.ReportAllocs()
	for b.Loop() {
		if err := inv.CheckVerified(get, c.data, c.prevData, c.ops); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInvertVerifiedTypical: BenchmarkInvertTypical without re-hashing
// the node blocks.
func BenchmarkInvertVerifiedTypical(b *testing.B) { benchInvertVerified(b, typicalCommit(b)) }

// BenchmarkInvertVerifiedExtreme: BenchmarkInvertExtreme without re-hashing
// the node blocks.
func BenchmarkInvertVerifiedExtreme(b *testing.B) { benchInvertVerified(b, findCommit(b, 0, 4424)) }

// BenchmarkInvertTypical: a median single-create commit of the capture.
func BenchmarkInvertTypical(b *testing.B) { benchInvert(b, typicalCommit(b)) }

// BenchmarkInvertExtreme: host 0 seq 4424, the capture's worst commit.
func BenchmarkInvertExtreme(b *testing.B) { benchInvert(b, findCommit(b, 0, 4424)) }

// BenchmarkInvertCapture: every capture commit in turn; ns/op is per commit.
func BenchmarkInvertCapture(b *testing.B) {
	commits, err := loadCapture()
	if err != nil {
		b.Fatal(err)
	}
	var inv Inverter
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c := &commits[i%len(commits)]
		if err := inv.Check(mapGetter(c.blocks), c.data, c.prevData, c.ops); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkDecodeNode(b *testing.B) {
	c := findCommit(b, 0, 4424)
	blk := c.blocks[string(c.data)]
	var nd NodeData
	var keys []byte
	b.SetBytes(int64(len(blk)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if keys, err = DecodeNode(&nd, blk, keys[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// benchTree builds a committed tree of n random keys.
func benchTree(b *testing.B, r *rand.Rand, n int) *Tree {
	t := NewTree()
	for range n {
		if _, err := t.Insert(randKey(r), randValue(r)); err != nil {
			b.Fatal(err)
		}
	}
	t.Commit(nil)
	return t
}

// BenchmarkTreeInsert: one insert into a 100k-key tree (no hashing).
func BenchmarkTreeInsert(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	t := benchTree(b, r, 100_000)
	v := randValue(r)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := t.Insert(randKey(r), v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTreeCommit: a producer commit on a 100k-key tree: one create,
// re-hash of the changed path, proof blocks encoded.
func BenchmarkTreeCommit(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	t := benchTree(b, r, 100_000)
	v := randValue(r)
	blocks := 0
	b.ReportAllocs()
	for b.Loop() {
		if _, err := t.Insert(randKey(r), v); err != nil {
			b.Fatal(err)
		}
		t.Commit(func(cid.CID, []byte) { blocks++ })
	}
	b.ReportMetric(float64(blocks)/float64(b.N), "blocks/op")
}
