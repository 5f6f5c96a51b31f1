package relay

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/VictoriaMetrics/metrics"
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
	staying := make(map[uint64]struct{})
	ready := l.pass(nil, staying)
	if got := seqs(ready); !slices.Equal(got, []int64{2, 5, 7}) {
		t.Fatalf("passed %v, want [2 5 7]", got)
	}
	if got := seqs(l.items()); !slices.Equal(got, []int64{3, 4, 6, 8, 9}) {
		t.Fatalf("kept %v, want [3 4 6 8 9]", got)
	}
	if l.bytes != 400 {
		t.Fatalf("held bytes %d, want 400", l.bytes)
	}
	if !l.holds(&result{ev: store.Event{DID: []byte("did:b")}}) || l.holds(&result{did: "did:a"}) {
		t.Fatal("holds: did:b is held, did:a is not")
	}
	if len(staying) != 0 {
		t.Fatalf("pass left %d hashes in its scratch", len(staying))
	}
	// What stays is counted per account, and nothing else: b twice, c and
	// d (its #sync and its commit) once and twice.
	if len(l.accounts) != 3 {
		t.Fatalf("%d accounts counted, want 3 (b, c, d)", len(l.accounts))
	}
	l.release(nil, 1, 9)
	if len(l.accounts) != 0 || l.holds(&result{did: "did:b"}) {
		t.Fatalf("after releasing everything %d accounts are counted", len(l.accounts))
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

// BenchmarkHeldHeadCompletes: a host holds n results behind its lowest
// frame, which completes and is released at once, its next frame still
// unfinished: the completed result lands at the front of the list.
func BenchmarkHeldHeadCompletes(b *testing.B) {
	for _, n := range []int{64, 32768} {
		b.Run(fmt.Sprintf("held=%d", n), func(b *testing.B) {
			var l heldList
			for i := range n {
				l.insert(result{seq: int64(2*n + i), gen: 1})
			}
			var ready []result
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				seq := int64(i % n) // below every held one
				l.insert(result{seq: seq, gen: 1})
				if ready = l.release(ready[:0], 1, seq); len(ready) != 1 {
					b.Fatalf("released %d, want 1", len(ready))
				}
				if len(l.items()) != n {
					b.Fatalf("%d held, want %d", len(l.items()), n)
				}
			}
		})
	}
}

// heldParked is a held list as a busy host leaves it while its lowest
// frame waits for a DID document: n results that stay, #identity events
// of n distinct accounts, and dids for the commits that arrive behind.
func heldParked(n int) (*heldList, []result) {
	l := new(heldList)
	out := new(bytebufferpool.ByteBuffer)
	for i := range n {
		l.insert(result{seq: int64(i + 2), gen: 1, kind: event.KindIdentity, out: out, size: 100,
			ev: store.Event{DID: fmt.Appendf(nil, "did:plc:identity%06d", i)}})
	}
	commits := make([]result, n)
	for i := range commits {
		commits[i] = result{seq: int64(n + 2 + i), gen: 1, kind: event.KindCommit, out: out, size: 100,
			ev: store.Event{DID: fmt.Appendf(nil, "did:plc:commit%06d", i)}}
	}
	return l, commits
}

// BenchmarkHeldParked: what the sequencer spends on a host with n results
// held behind its parked lowest frame. holds: one arriving commit asks
// whether its account has a result held (sequencer.passing). pass: the
// sweep over the list, half of it commits that pass.
func BenchmarkHeldParked(b *testing.B) {
	for _, n := range []int{64, 4096} {
		b.Run(fmt.Sprintf("holds/n=%d", n), func(b *testing.B) {
			l, commits := heldParked(n)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if l.holds(&commits[i%n]) {
					b.Fatal("a commit's account is held")
				}
			}
		})
		b.Run(fmt.Sprintf("pass/n=%d", n), func(b *testing.B) {
			l, commits := heldParked(n / 2)
			staying := make(map[uint64]struct{})
			var ready []result
			b.ReportAllocs()
			for b.Loop() {
				for i := range commits {
					l.insert(commits[i])
				}
				ready = l.pass(ready[:0], staying)
				if len(ready) != n/2 {
					b.Fatalf("%d passed, want %d", len(ready), n/2)
				}
			}
		})
	}
}

// TestFollowHeld: a relay-generated result queues behind the latest held
// result of its account, whichever host holds it, and is not queued when
// its account has nothing held (another account with results held on the
// same host does not count).
func TestFollowHeld(t *testing.T) {
	a, b := new(hostState), new(hostState)
	q := &sequencer{held: map[*hostState]*heldList{}}
	ev := func(seq int64, did string) result {
		return result{seq: seq, gen: 3, kind: event.KindCommit, out: new(bytebufferpool.ByteBuffer), ev: store.Event{DID: []byte(did)}}
	}
	q.heldOf(a).insert(ev(5, "did:x"))
	q.heldOf(a).insert(ev(6, "did:y"))
	q.heldOf(b).insert(ev(9, "did:x"))
	q.heldOf(b).insert(ev(4, "did:y"))

	if res := (result{did: "did:z"}); q.followHeld(&res) {
		t.Fatal("did:z has nothing held, yet its result was queued")
	}
	res := result{kind: event.KindAccount, out: new(bytebufferpool.ByteBuffer), ev: store.Event{DID: []byte("did:x")}}
	if !q.followHeld(&res) {
		t.Fatal("did:x has results held, yet its result was not queued")
	}
	items := q.held[b].items()
	last := items[len(items)-1]
	if last.seq != 9 || last.gen != 3 || !last.follows || last.kind != event.KindAccount {
		t.Fatalf("host b's list ends with %+v, want the #account behind seq 9", last)
	}
	if len(q.held[a].items()) != 2 {
		t.Fatal("queued on the wrong host")
	}
	// A result without an event (a resync's local status) follows too.
	res = result{did: "did:y"}
	if !q.followHeld(&res) || res.hs != a || res.seq != 6 {
		t.Fatalf("did:y's result queued at host %p seq %d, want host a's seq 6", res.hs, res.seq)
	}
}

// TestHeldDroppedFramesPauseHost: results of dropped frames have no frame
// bytes, yet holding them takes a slot each: a host whose frames the
// workers drop behind one slow frame of its own is paused once its slots
// pass HostHeldBytes (before, it held nothing in the count and was never
// paused), and resumed once its list is empty, though the grown list is
// still allocated. A list too long for the spare pool goes to the
// garbage collector.
func TestHeldDroppedFramesPauseHost(t *testing.T) {
	const slots = 64
	cfg := &Config{HostHeldBytes: slots * heldSlotBytes, MaxHeldBytes: 1 << 40}
	q := &sequencer{cfg: cfg, held: map[*hostState]*heldList{}, m: newMetrics(metrics.NewSet(), nil, nil)}
	hs := new(hostState)
	l := q.heldOf(hs)
	for i := range 2 * slots {
		l.insert(result{seq: int64(i + 2), gen: 1}) // seq 1, the slow frame, still in a worker
		q.holdBack(hs, l)
	}
	if l.bytes != 0 || !hs.heldBack.Load() || q.m.hostPauses[pauseHeld].Get() != 1 {
		t.Fatalf("frame bytes %d, held back %v, pauses %d: want 0, paused once", l.bytes, hs.heldBack.Load(), q.m.hostPauses[pauseHeld].Get())
	}
	if l.memory() < 2*slots*heldSlotBytes {
		t.Fatalf("memory %d for %d held results, want at least %d", l.memory(), 2*slots, 2*slots*heldSlotBytes)
	}
	l.release(nil, 1, 2*slots+1)
	q.holdBack(hs, l)
	if hs.heldBack.Load() {
		t.Fatal("still paused with nothing held")
	}
	q.dropIfEmpty(hs, l)
	if len(q.held) != 0 || len(q.spare) != 1 || q.spareN != cap(l.r) {
		t.Fatalf("%d lists held, %d spare of %d slots", len(q.held), len(q.spare), q.spareN)
	}
	big := &heldList{r: make([]result, 0, maxSpareHeldSlots)}
	q.held[hs] = big
	q.dropIfEmpty(hs, big)
	if len(q.spare) != 1 {
		t.Fatalf("%d spare lists: a list of %d slots was kept", len(q.spare), maxSpareHeldSlots)
	}
	if q.heldOf(hs) != l || q.spareN != 0 {
		t.Fatal("the spare list was not reused")
	}
}
