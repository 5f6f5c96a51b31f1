package verify

import (
	"bytes"
	"slices"
	"testing"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/mst"
	"github.com/atrelay/relay/internal/repo"
)

// The inverter does not hash MST node blocks again (CheckVerified): it
// relies on loadCommit's CAR hash check. A corrupt node block must
// therefore still fail as bad_car in both modes; Lenient tolerates
// inversion failures, so without the CAR check it would accept.
func TestCorruptNodeBlockIsBadCAR(t *testing.T) {
	w := newWorld(t, atcrypto.P256, 40)
	ev := w.apply([]repo.Write{w.create()})
	root, blocks := blocksOf(t, ev.Blocks)
	nodes := 0
	for i := range blocks {
		var nd mst.NodeData
		if _, err := mst.DecodeNode(&nd, blocks[i].Data, nil); err != nil {
			continue // commit or record block
		}
		nodes++
		for _, mode := range []Mode{Strict, Lenient} {
			bad := slices.Clone(blocks)
			data := bytes.Clone(blocks[i].Data)
			data[len(data)-1] ^= 1 // the "l" link's last digest byte, or null → undefined
			bad[i].Data = data
			e := cloneCommit(ev)
			e.Blocks = buildCAR(root, bad)
			if vd := w.check(Config{Mode: mode}, e); vd.Action != Drop || vd.Reason != ReasonBadCAR {
				t.Errorf("%s: node %s corrupted: %s, want drop %s", mode, blocks[i].CID, vd, ReasonBadCAR)
			}
		}
	}
	if nodes < 2 {
		t.Fatalf("only %d node blocks in the commit", nodes)
	}
	// The untouched commit passes, so the drops above are the corruption's.
	if vd := w.check(Config{}, ev); vd.Action != Accept {
		t.Fatalf("valid commit: %s", vd)
	}
}
