package relay

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

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
		n := nextBatch(rest, 2048, maxBatchFrameBytes)
		sizes = append(sizes, n)
		rest = rest[n:]
	}
	if got, want := fmt.Sprint(sizes), "[10 10 5 1 10 4]"; got != want {
		t.Fatalf("batches of %s, want %s", got, want)
	}
	if n := nextBatch(make([]result, 10), 3, maxBatchFrameBytes); n != 3 {
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

// TestCommitReadyAfterSlowCommit: after a commit slower than slowCommit the
// next group commit takes up to slowBatchBytes of frames; after a fast one,
// batchBytes. Every ready result is committed, in order, either way.
func TestCommitReadyAfterSlowCommit(t *testing.T) {
	commits := func(last time.Duration) int {
		q := newBareSequencer(t)
		fillIdentities(q, 40)
		frames := 0
		for _, res := range q.batch {
			frames += res.frameLen
		}
		// Ten and forty frames' worth: the policy, not the constants.
		q.batchBytes, q.slowBatchBytes = frames/4, frames
		q.ready = append(q.ready[:0], q.batch...)
		q.batch = q.batch[:0]
		q.lastCommit = last
		q.commitReady()
		if len(q.ready) != 0 || q.st.NewestSeq() != 40 {
			t.Fatalf("after commitReady: %d ready, newest seq %d; want 0, 40", len(q.ready), q.st.NewestSeq())
		}
		return histogramCount(q.m.batchEvents)
	}
	if n := commits(0); n < 4 {
		t.Errorf("after a fast commit: 40 results in %d group commits, want at least 4 (a quarter of them each)", n)
	}
	if n := commits(slowCommit); n != 1 {
		t.Errorf("after a slow commit: 40 results in %d group commits, want 1", n)
	}
}

// histogramCount is how many values h has recorded.
func histogramCount(h *metrics.Histogram) int {
	n := 0
	h.VisitNonZeroBuckets(func(_ string, count uint64) { n += int(count) })
	return n
}

// TestGroupCommitBytes: a group commit stays within the store's batch bound
// and at most 640 KiB after a fast commit, and takes more after a slow one
// when the store allows it.
func TestGroupCommitBytes(t *testing.T) {
	for _, c := range []struct{ storeMax, fast, slow int }{
		{256 << 10, 256 << 10, 256 << 10}, // 1 MiB memtable (small budgets)
		{2 << 20, maxBatchFrameBytes, 2 << 20},
		{16 << 20, maxBatchFrameBytes, maxSlowBatchFrameBytes},
	} {
		if fast, slow := groupCommitBytes(c.storeMax); fast != c.fast || slow != c.slow {
			t.Errorf("store max %d: fast %d, slow %d; want %d, %d", c.storeMax, fast, slow, c.fast, c.slow)
		}
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
	benchCommits(b, newBareSequencer(b))
}

// holdBehindParked makes a host whose lowest frame (seq 1) is parked and
// has the sequencer hold n #identity results behind it (they never pass),
// for accounts named by prefix; it returns the host.
func holdBehindParked(tb testing.TB, q *sequencer, n int, prefix string) *hostState {
	tb.Helper()
	hs := new(hostState)
	gen := hs.tr.register(1)
	hs.tr.markParked(gen, 1)
	for s := int64(2); s <= int64(n)+1; s++ {
		hs.tr.register(s)
		out := q.bufs.Get(64)
		q.in = append(q.in[:0], result{hs: hs, seq: s, gen: gen, ticket: uint64(s), kind: event.KindIdentity, out: out,
			size: int64(cap(out.B)), ev: store.Event{DID: fmt.Appendf(nil, "%s%d", prefix, s)}})
		q.release()
	}
	if n > 0 && len(q.held[hs].items()) != n {
		tb.Fatalf("%d held, want %d", len(q.held[hs].items()), n)
	}
	return hs
}

// benchCommits runs group commits of 64 relay-generated events; one op is
// one event.
func benchCommits(b *testing.B, q *sequencer) {
	const size = 64
	b.ReportAllocs()
	for done := 0; done < b.N; done += size {
		b.StopTimer()
		fillIdentities(q, size)
		b.StartTimer()
		q.commit()
	}
}

// TestSequencerHeldAccounting drives release and sweepHeld with three
// hosts' results completing out of order, some hosts' lowest frames
// parked, and checks after every step what the incremental accounting
// must equal: heldBytes the held lists' memory, each worker's lowest held
// ticket (heldTickets) the lowest in the lists, the results budget the
// budget of the results not held, every held result out of the budget.
// At the end nothing is held and the budget is back to zero.
func TestSequencerHeldAccounting(t *testing.T) {
	q := newBareSequencer(t)
	rng := rand.New(rand.NewPCG(5, 6))
	hosts := make([]*hostState, 3)
	var pending []result
	for h := range hosts {
		hs := new(hostState)
		hosts[h] = hs
		for s := int64(1); s <= 400; s++ {
			gen := hs.tr.register(s)
			res := result{hs: hs, seq: s, gen: gen, worker: rng.IntN(len(q.tix)), kind: event.KindCommit}
			if rng.IntN(4) > 0 { // else a dropped frame: no output
				res.out = q.bufs.Get(64 + rng.IntN(512))
				res.ev.DID = fmt.Appendf(nil, "did:plc:h%da%d", h, rng.IntN(8))
				if rng.IntN(10) == 0 {
					res.kind = event.KindIdentity // never passes a parked frame
				}
				res.size = int64(cap(res.out.B))
				res.budget = res.size
				q.budget.acquire(res.budget)
			}
			pending = append(pending, res)
		}
	}
	// Out of order within a window, as two workers finish them.
	for i := range pending {
		j := min(len(pending)-1, i+rng.IntN(40))
		pending[i], pending[j] = pending[j], pending[i]
	}
	var ticket uint64
	mostHeld := 0
	check := func(step string) {
		t.Helper()
		var mem, ready int64
		for _, l := range q.held {
			mostHeld = max(mostHeld, len(l.items()))
			mem += l.memory()
			for _, x := range l.items() {
				if x.budget != 0 {
					t.Fatalf("%s: a held result keeps %d bytes of the results budget", step, x.budget)
				}
			}
		}
		lowest := make([]uint64, len(q.tix))
		for _, l := range q.held {
			for _, x := range l.items() {
				if lowest[x.worker] == 0 || x.ticket < lowest[x.worker] {
					lowest[x.worker] = x.ticket
				}
			}
		}
		for w := range lowest {
			if got := q.tix.lowest(w); got != lowest[w] {
				t.Fatalf("%s: worker %d's lowest held ticket %d, want %d", step, w, got, lowest[w])
			}
		}
		for _, x := range q.ready {
			ready += x.budget
		}
		for _, x := range pending { // acquired up front, as if in the channel
			ready += x.budget
		}
		if q.heldBytes != mem || q.heldNow.Load() != mem {
			t.Fatalf("%s: heldBytes %d, gauge %d, want the lists' %d", step, q.heldBytes, q.heldNow.Load(), mem)
		}
		if used := q.budget.inUse(); used != ready {
			t.Fatalf("%s: results budget in use %d, want the ready and pending results' %d", step, used, ready)
		}
	}
	commit := func() { // what a group commit does with the budget of ready
		for i := range q.ready {
			q.budget.release(q.ready[i].budget)
			if q.ready[i].out != nil {
				q.bufs.Put(q.ready[i].out)
			}
		}
		q.ready = q.ready[:0]
	}
	for len(pending) > 0 {
		n := min(len(pending), 1+rng.IntN(16))
		for i := range pending[:n] {
			ticket++
			pending[i].ticket = ticket
			if rng.IntN(8) == 0 {
				hs := pending[i].hs
				hs.tr.markParked(pending[i].gen, hs.tr.lowWater()+1)
			}
		}
		q.in = append(q.in[:0], pending[:n]...)
		pending = pending[n:]
		q.release()
		check("release")
		if rng.IntN(4) == 0 {
			q.sweepHeld()
			check("sweep")
		}
		if rng.IntN(2) == 0 {
			commit()
			check("commit")
		}
	}
	q.sweepHeld()
	commit()
	check("end")
	if len(q.held) != 0 || q.heldBytes != 0 || q.budget.inUse() != 0 {
		t.Fatalf("at the end %d lists held, %d bytes, %d of the budget in use", len(q.held), q.heldBytes, q.budget.inUse())
	}
	if mostHeld < 10 || q.m.passed.Get() == 0 {
		t.Fatalf("at most %d results held on a host, %d passed a parked frame: the test did not exercise holding", mostHeld, q.m.passed.Get())
	}
}

// BenchmarkReleaseBesideHeld: one drain of 4 commits, in order, of a host
// with nothing held, while another host holds n results behind its parked
// lowest frame. held=0 is the usual path; the others what holding costs
// every other host's results (before, each drain walked every held
// result).
func BenchmarkReleaseBesideHeld(b *testing.B) {
	for _, n := range []int{0, 4096, 32768} {
		b.Run(fmt.Sprintf("held=%d", n), func(b *testing.B) {
			q := newBareSequencer(b)
			holdBehindParked(b, q, n, "did:plc:")
			busy := new(hostState)
			dids := make([][]byte, 64)
			for i := range dids {
				dids[i] = fmt.Appendf(nil, "did:plc:busy%d", i)
			}
			out := q.bufs.Get(64)
			seq := int64(0)
			b.ReportAllocs()
			for b.Loop() {
				q.in = q.in[:0]
				for range 4 {
					seq++
					g := busy.tr.register(seq)
					q.in = append(q.in, result{hs: busy, seq: seq, gen: g, worker: int(seq % 2), ticket: uint64(seq),
						kind: event.KindCommit, out: out, ev: store.Event{DID: dids[seq%64]}})
				}
				q.release()
				q.ready = q.ready[:0]
			}
		})
	}
}

// BenchmarkParkSignal: one host parks its lowest frame while 200 hosts
// each hold 500 results (#identity events, which never pass) behind
// parked frames of their own: what the sequencer does on the worker's
// signal.
func BenchmarkParkSignal(b *testing.B) {
	q := newBareSequencer(b)
	hosts := make([]*hostState, 200)
	for h := range hosts {
		hosts[h] = holdBehindParked(b, q, 500, fmt.Sprintf("did:plc:h%da", h))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		parkSignal(q, hosts[i%len(hosts)])
		if len(q.ready) != 0 {
			b.Fatal("a held #identity passed")
		}
	}
}

// parkSignal is what the sequencer's run does when a worker parks hs's
// lowest frame.
func parkSignal(q *sequencer, hs *hostState) {
	q.parked.add(hs)
	<-q.parked.wake
	q.passParked()
}

// BenchmarkCommitBesideHeld: BenchmarkSequencerCommit's group commit of 64
// relay-generated results while one host holds n results behind its
// parked lowest frame. Per event, as BenchmarkSequencerCommit.
func BenchmarkCommitBesideHeld(b *testing.B) {
	for _, n := range []int{0, 32768} {
		b.Run(fmt.Sprintf("held=%d", n), func(b *testing.B) {
			q := newBareSequencer(b)
			holdBehindParked(b, q, n, "did:plc:")
			benchCommits(b, q)
		})
	}
}
