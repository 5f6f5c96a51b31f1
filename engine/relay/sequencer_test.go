package relay

import (
	"fmt"
	"testing"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/store"
)

// newBareSequencer is a sequencer over a fresh store and hub, of a relay
// that is never started: commit is driven by hand. The hub's ring is small,
// so published frames soon go back to the pool, as consumers' acks and
// ring eviction make them do in a running relay.
func newBareSequencer(tb testing.TB) *sequencer {
	tb.Helper()
	st, err := store.Open(tb.TempDir(), store.Options{Sync: store.NoSync, BlockCacheBytes: 8 << 20, MemTableBytes: 8 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	ids := identity.New(identity.Config{})
	tb.Cleanup(ids.Close)
	hub, err := firehose.NewHub(store.FirehoseLog{St: st}, firehose.Config{RingBytes: 64 << 10})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(hub.Close)
	r, err := New(testConfig(), Deps{Store: st, Identity: ids, Hub: hub})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = r.Close() })
	return newSequencer(r)
}

// fillIdentities sets q.batch to n relay-generated #identity results over
// 100 accounts, as workers hand them over: a frame with a placeholder seq
// in a pooled buffer, the event's DID viewing it.
func fillIdentities(q *sequencer, n int) {
	q.batch = q.batch[:n]
	for i := range q.batch {
		did := fmt.Appendf(nil, "did:plc:%024d", i%100)
		out := q.bufs.Get(256)
		out.B = event.AppendIdentity(out.B[:0], &event.Identity{DID: did, Time: []byte("2026-12-05T16:00:00.000Z")})
		frameLen := len(out.B)
		out.B = append(out.B, did...)
		q.batch[i] = result{kind: event.KindIdentity, out: out, frameLen: frameLen,
			ev: store.Event{Kind: store.KindIdentity, DID: out.B[frameLen:]}}
	}
}

// TestSequencerCommit: a batch gets the seqs after the store's newest, in
// order, with each logged frame carrying its seq.
func TestSequencerCommit(t *testing.T) {
	q := newBareSequencer(t)
	for round := range 3 {
		fillIdentities(q, 5)
		q.commit()
		if got, want := q.st.NewestSeq(), store.Seq(5*(round+1)); got != want || q.next != want+1 {
			t.Fatalf("round %d: newest %d, next %d; want %d, %d", round, got, q.next, want, want+1)
		}
	}
	it, err := q.st.NewIterator(0)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var p event.Peeked
	for want := store.Seq(1); it.Next(); want++ {
		if err := event.Peek(it.Frame(), &p); err != nil || it.Seq() != want || p.Seq != int64(want) {
			t.Fatalf("row %d: seq %d, frame seq %d, %v", want, it.Seq(), p.Seq, err)
		}
	}
}

// TestNextBatch: group commits take at most maxBatchFrameBytes of frames
// (Pebble reuses a batch's buffer only up to 1 MiB) and MaxBatchEvents
// results, a frame larger than the bound alone, in order.
func TestNextBatch(t *testing.T) {
	ready := make([]result, 40)
	for i := range ready {
		ready[i].frameLen = 60 << 10 // ten fit in 640 KiB
	}
	ready[25].frameLen = 2 << 20
	var sizes []int
	for rest := ready; len(rest) > 0; {
		n := nextBatch(rest, 2048)
		sizes = append(sizes, n)
		rest = rest[n:]
	}
	if got, want := fmt.Sprint(sizes), "[10 10 5 1 10 4]"; got != want {
		t.Fatalf("batches of %s, want %s", got, want)
	}
	if n := nextBatch(make([]result, 10), 3); n != 3 {
		t.Fatalf("nextBatch of 10 small results at most 3: %d", n)
	}
}

// TestCommitReady: every ready result is committed, in order.
func TestCommitReady(t *testing.T) {
	q := newBareSequencer(t)
	fillIdentities(q, 40)
	q.ready = append(q.ready[:0], q.batch...)
	q.batch = q.batch[:0]
	q.commitReady()
	if len(q.ready) != 0 || q.st.NewestSeq() != 40 {
		t.Fatalf("after commitReady: %d ready, newest seq %d; want 0, 40", len(q.ready), q.st.NewestSeq())
	}
}

// TestSequencerCommitAllocs holds a 64-event group commit, from released
// results to published frames, at a few allocations per batch (the
// store's Pebble account reads), none per frame.
func TestSequencerCommitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	q := newBareSequencer(t)
	for range 100 { // warm pools, the ring, maps and every account
		fillIdentities(q, 64)
		q.commit()
	}
	batches := make([][]result, 50)
	for i := range batches {
		fillIdentities(q, 64)
		batches[i] = append([]result(nil), q.batch...)
	}
	i := 0
	allocs := testing.AllocsPerRun(len(batches)-1, func() {
		q.batch = append(q.batch[:0], batches[i]...)
		i++
		q.commit()
	})
	t.Logf("sequencer commit: %.1f allocs per 64-event batch", allocs)
	if allocs > sequencerAllocsPerBatch {
		t.Fatalf("sequencer commit: %.1f allocs per 64-event batch, want ≤ %d", allocs, sequencerAllocsPerBatch)
	}
}

// sequencerAllocsPerBatch bounds one 64-event sequencer commit at steady
// state, measured at 0: nothing per frame, with room for a Pebble memtable
// rotation.
const sequencerAllocsPerBatch = 4

// BenchmarkSequencerCommit measures one group commit of 64 relay-generated
// events through the sequencer, without fsync: stage, seqs and frames,
// commit, publish. One op is one event.
func BenchmarkSequencerCommit(b *testing.B) {
	q := newBareSequencer(b)
	const size = 64
	b.ReportAllocs()
	for done := 0; done < b.N; done += size {
		b.StopTimer()
		fillIdentities(q, size)
		b.StartTimer()
		q.commit()
	}
}
