package car

import (
	"hash/maphash"

	"github.com/atrelay/relay/engine/atproto/cid"
)

// linearMax is the block count up to which Get scans linearly. Measured
// (BenchmarkGet, 2 vCPU EPYC): a scan costs about 4 ns per block, a table
// lookup about 40 ns, and building the table about as much per block, so
// typical firehose slices (2-20 blocks) scan and whole-repository CARs hash.
const linearMax = 16

// index is an open-addressing hash table from CID to the position of its
// first block. Slots hold position+1 so the zero slot means empty; the table
// has at least twice as many slots as blocks, so probes stay short. A
// per-Reader random seed keeps crafted CIDs (possible when hashes are not
// verified) from forcing collisions. Owned by the Reader.
type index struct {
	seed  maphash.Seed
	slots []uint32
	mask  uint64
}

func (x *index) built() bool { return x.mask != 0 }

func (x *index) reset() { x.mask = 0 }

func (x *index) build(blocks []Block) {
	if x.slots == nil {
		x.seed = maphash.MakeSeed()
	}
	size := 1
	for size < 2*len(blocks) {
		size <<= 1
	}
	if cap(x.slots) < size {
		x.slots = make([]uint32, size)
	} else {
		x.slots = x.slots[:size]
		clear(x.slots)
	}
	x.mask = uint64(size - 1)
	for i := range blocks {
		c := blocks[i].CID
		for h := maphash.Bytes(x.seed, c) & x.mask; ; h = (h + 1) & x.mask {
			s := x.slots[h]
			if s == 0 {
				x.slots[h] = uint32(i + 1)
				break
			}
			if string(blocks[s-1].CID) == string(c) {
				break // duplicate block: the first one wins
			}
		}
	}
}

func (x *index) find(blocks []Block, c cid.CID) int {
	for h := maphash.Bytes(x.seed, c) & x.mask; ; h = (h + 1) & x.mask {
		s := x.slots[h]
		if s == 0 {
			return -1
		}
		if string(blocks[s-1].CID) == string(c) {
			return int(s - 1)
		}
	}
}
