package relay

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// heldModel is what a held list must equal: every result held so far in
// seq order, equal seqs in arrival order (the stable sort the list
// replaces), minus what was released.
func heldModel(all []result) []result {
	want := slices.Clone(all)
	slices.SortStableFunc(want, func(a, b result) int { return int(a.seq - b.seq) })
	return want
}

// TestHeldList: random arrivals (mostly rising seqs, stragglers, repeats)
// and releases of the low-water prefix keep the list equal to the model,
// and what is released comes out in order.
func TestHeldList(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 300; round++ {
		var l heldList
		var held []result // the model, in arrival order
		var ready []result
		low := int64(-1)
		for i := 0; i < 200; i++ {
			seq := int64(i)
			switch rng.IntN(4) {
			case 0:
				seq -= int64(rng.IntN(10))
			case 1:
				seq = low + 1 + int64(rng.IntN(5))
			}
			seq = max(seq, low+1)
			x := result{seq: seq, ticket: uint64(i), gen: 1}
			held = append(held, x)
			l.insert(x)
			if rng.IntN(3) == 0 {
				low += int64(rng.IntN(8))
				before := len(ready)
				ready = l.release(ready, 1, low)
				want := heldModel(held)
				k := 0
				for k < len(want) && want[k].seq <= low {
					k++
				}
				if got := ready[before:]; !sameResults(got, want[:k]) {
					t.Fatalf("round %d: released %v, want %v", round, seqs(got), seqs(want[:k]))
				}
				held = want[k:]
			}
			if !sameResults(l.items(), heldModel(held)) {
				t.Fatalf("round %d step %d: held %v, want %v", round, i, seqs(l.items()), seqs(heldModel(held)))
			}
		}
	}
}

// TestHeldListGenerations: results of an older generation (a cursor reset
// while they were held) are released whatever their seq; the rest stay.
func TestHeldListGenerations(t *testing.T) {
	var l heldList
	for _, x := range []result{{seq: 5, gen: 1}, {seq: 9, gen: 1}, {seq: 3, gen: 2}, {seq: 7, gen: 2}} {
		l.insert(x)
	}
	ready := l.release(nil, 2, 4)
	if got := seqs(ready); !slices.Equal(got, []int64{3, 5, 9}) {
		t.Fatalf("released %v, want [3 5 9]", got)
	}
	if got := seqs(l.items()); !slices.Equal(got, []int64{7}) || l.mixed || l.gen != 2 {
		t.Fatalf("kept %v mixed %v gen %d, want [7] of generation 2 alone", got, l.mixed, l.gen)
	}
	l.release(ready[:0], 2, 7)
	if !l.empty() {
		t.Fatalf("not empty: %v", seqs(l.items()))
	}
}

func sameResults(a, b []result) bool {
	return slices.EqualFunc(a, b, func(x, y result) bool { return x.seq == y.seq && x.ticket == y.ticket })
}

func seqs(rs []result) []int64 {
	out := make([]int64, len(rs))
	for i := range rs {
		out[i] = rs[i].seq
	}
	return out
}

// BenchmarkHeldList: a long held list fed nearly in order and released
// a prefix at a time, as for bench-e2e's busiest host when one worker runs
// ahead of the other.
func BenchmarkHeldList(b *testing.B) {
	var l heldList
	var ready []result
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		seq := int64(i)
		if i%8 == 0 {
			seq -= 5
		}
		l.insert(result{seq: seq})
		if i%64 == 0 && i >= 2048 {
			ready = l.release(ready[:0], 0, int64(i-2048))
		}
	}
}
