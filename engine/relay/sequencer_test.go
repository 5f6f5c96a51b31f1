package relay

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestInsertHeld: a held list stays in seq order whatever order results
// arrive in, and results of equal seq keep their arrival order (what the
// stable sort it replaces guaranteed).
func TestInsertHeld(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		var h, all []result
		n := 1 + rng.IntN(60)
		for i := 0; i < n; i++ {
			// Mostly rising seqs with some stragglers and repeats, as
			// workers finish a host's frames.
			seq := int64(i)
			switch rng.IntN(4) {
			case 0:
				seq -= int64(rng.IntN(10))
			case 1:
				if len(all) > 0 {
					seq = all[rng.IntN(len(all))].seq
				}
			}
			x := result{seq: seq, ticket: uint64(i)} // ticket records arrival
			all = append(all, x)
			h = insertHeld(h, x)
		}
		want := slices.Clone(all)
		slices.SortStableFunc(want, func(a, b result) int { return int(a.seq - b.seq) })
		if len(h) != len(want) {
			t.Fatalf("round %d: %d held, want %d", round, len(h), len(want))
		}
		for i := range h {
			if h[i].seq != want[i].seq || h[i].ticket != want[i].ticket {
				t.Fatalf("round %d: position %d holds seq %d (arrival %d), want seq %d (arrival %d)",
					round, i, h[i].seq, h[i].ticket, want[i].seq, want[i].ticket)
			}
		}
	}
}

// BenchmarkInsertHeld: results arriving nearly in order into a long held
// list, as for bench-e2e's busiest host.
func BenchmarkInsertHeld(b *testing.B) {
	h := make([]result, 0, 1024)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if len(h) == 512 {
			h = h[:0]
		}
		seq := int64(i)
		if i%8 == 0 {
			seq -= 5
		}
		h = insertHeld(h, result{seq: seq})
	}
}
