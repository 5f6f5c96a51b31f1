package relay

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/store"
	"github.com/valyala/bytebufferpool"
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

// TestHeldListCursors: a released result carries its own seq as its host
// cursor and only the last of a release the low-water mark, whichever path
// releases it: a group commit that ends inside the group must not persist
// a cursor past results still waiting for the next one (TestKill9 lost
// events that way with a cursor of low on every result).
func TestHeldListCursors(t *testing.T) {
	var l heldList
	for _, seq := range []int64{3, 5, 8, 12} {
		l.insert(result{seq: seq, gen: 1})
	}
	ready := l.release(nil, 1, 10) // 9 and 10 completed without a result
	if got := cursors(ready); !slices.Equal(got, []int64{3, 5, 10}) {
		t.Fatalf("cursors %v, want [3 5 10]", got)
	}
	// The mixed path: an orphan of generation 0 carries none.
	l.insert(result{seq: 20, gen: 0})
	l.insert(result{seq: 14, gen: 1})
	ready = l.release(nil, 1, 16)
	if got := seqs(ready); !slices.Equal(got, []int64{12, 14, 20}) {
		t.Fatalf("released %v, want [12 14 20]", got)
	}
	if got := cursors(ready); !slices.Equal(got, []int64{12, 16, 0}) {
		t.Fatalf("cursors %v, want [12 16 0]", got)
	}
}

// TestHeldListPass: commits and dropped frames pass, each account's order
// holds (a commit whose account has a result staying stays too), and an
// #identity, an #account or a relay-generated result never passes.
func TestHeldListPass(t *testing.T) {
	ev := func(seq int64, did string, kind event.Kind) result {
		return result{seq: seq, gen: 1, kind: kind, out: new(bytebufferpool.ByteBuffer), size: 100,
			ev: store.Event{DID: []byte(did)}}
	}
	var l heldList
	for _, x := range []result{
		ev(2, "did:a", event.KindCommit),
		ev(3, "did:b", event.KindIdentity),
		ev(4, "did:b", event.KindCommit), // behind b's #identity
		{seq: 5, gen: 1},                 // dropped: passes
		ev(6, "did:c", event.KindAccount),
		ev(7, "did:a", event.KindCommit),
		{seq: 8, gen: 1, kind: event.KindSync, out: new(bytebufferpool.ByteBuffer), ev: store.Event{DID: []byte("did:d")}, follows: true},
		ev(9, "did:d", event.KindCommit), // behind d's relay-generated #sync
	} {
		l.insert(x)
	}
	var blocked [][]byte
	ready := l.pass(nil, &blocked)
	if got := seqs(ready); !slices.Equal(got, []int64{2, 5, 7}) {
		t.Fatalf("passed %v, want [2 5 7]", got)
	}
	if got := seqs(l.items()); !slices.Equal(got, []int64{3, 4, 6, 8, 9}) {
		t.Fatalf("kept %v, want [3 4 6 8 9]", got)
	}
	if l.bytes != 400 {
		t.Fatalf("held bytes %d, want 400", l.bytes)
	}
	if !l.holds([]byte("did:b")) || l.holds([]byte("did:a")) {
		t.Fatal("holds: did:b is held, did:a is not")
	}
	if got := cursors(ready); !slices.Equal(got, []int64{0, 0, 0}) {
		t.Fatalf("passed results carry cursors %v: the host cursor must stay below the parked frame", got)
	}
}

func cursors(rs []result) []int64 {
	out := make([]int64, len(rs))
	for i := range rs {
		out[i] = rs[i].cursor
	}
	return out
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
