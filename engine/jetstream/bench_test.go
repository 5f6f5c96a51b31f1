package jetstream

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/atrelay/relay/internal/streamtest"
)

// fanoutRig is a Server with n in-process subscribers in its live set (no
// sockets: their queues are drained by the rig) and the capture's frames
// to pump. A third of the subscribers want everything, a third
// app.bsky.feed.*, a third one DID; every other one compresses.
type fanoutRig struct {
	s      *Server
	subs   []*subscriber
	frames [][]byte
	seq    uint64
}

func newFanoutRig(tb testing.TB, n int) *fanoutRig {
	tb.Helper()
	s, err := New(newFakeSource(), Config{PollInterval: time.Hour, QueueEvents: 1 << 16, QueueBytes: 1 << 30})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	r := &fanoutRig{s: s, frames: captureFrames(tb)}
	var did string
	var c converter
	for _, f := range r.frames {
		if c.load(1, 0, f) == nil && len(c.cands) > 0 {
			did = string(c.did())
			break
		}
	}
	filters := []*filter{allEvents, mustFilter(tb, []string{"app.bsky.feed.*"}, nil), mustFilter(tb, nil, []string{did})}
	for i := range n {
		a, b := net.Pipe()
		tb.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		sub := newSubscriber(s, a, i%2 == 1)
		sub.filter.Store(filters[i%3])
		r.subs = append(r.subs, sub)
	}
	s.mu.Lock()
	for _, sub := range r.subs {
		s.goLiveLocked(sub, 0, 0)
	}
	s.mu.Unlock()
	return r
}

func mustFilter(tb testing.TB, cols, dids []string) *filter {
	f, err := newFilter(cols, dids, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// step pumps the next capture frame and drains every queue, returning the
// messages delivered.
func (r *fanoutRig) step() int {
	f := r.frames[r.seq%uint64(len(r.frames))]
	r.seq++
	_ = r.s.pumpEvent(r.seq, secondMS+int64(r.seq/4), f)
	n := 0
	for _, sub := range r.subs {
		k := sub.take()
		for i, f := range sub.out.Batch()[:k] {
			f.Release()
			sub.out.Batch()[i] = nil
		}
		n += k
	}
	return n
}

// BenchmarkFanout measures the pump's cost per relay event of the capture
// (decode, stamp, filter per subscriber, encode once, compress once,
// queue a shared reference per subscriber), with mixed filters.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100, 500} {
		b.Run("subscribers="+strconv.Itoa(n), func(b *testing.B) {
			r := newFanoutRig(b, n)
			for range len(r.frames) {
				r.step() // warm the pools, rings and encoder
			}
			delivered := 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				delivered += r.step()
			}
			b.ReportMetric(float64(delivered)/float64(b.N), "deliveries/op")
		})
	}
}

// TestFanoutAllocs: at steady state, fanning a relay event out to many
// subscribers allocates nothing: the JSON and zstd bytes live in pooled,
// shared frames.
func TestFanoutAllocs(t *testing.T) {
	if streamtest.Race || streamtest.Invariants {
		t.Skip("the race detector and the pool's invariants build allocate")
	}
	r := newFanoutRig(t, 30)
	for range len(r.frames) {
		r.step()
	}
	delivered := 0
	enc0 := r.s.m.encoded.Get()
	if a := testing.AllocsPerRun(2000, func() { delivered += r.step() }); a > 0.05 {
		t.Fatalf("%.2f allocations per relay event", a)
	}
	if delivered == 0 {
		t.Fatal("nothing delivered")
	}
	// Each wanted event was encoded once, not once per subscriber.
	// 30 subscribers, a third of them wanting everything: at least ten
	// deliveries per encoding.
	enc := r.s.m.encoded.Get() - enc0
	if enc == 0 || uint64(delivered) < 10*enc {
		t.Fatalf("%d encodings for %d deliveries", enc, delivered)
	}
}

// didFilteredRig is a Server whose n live subscribers (no sockets) each
// want one DID that never appears, and a commit of ops ops by alice: the
// pump decodes it and asks every subscriber about every op, queueing
// nothing.
func didFilteredRig(tb testing.TB, n, ops int) (*Server, []byte) {
	tb.Helper()
	s, err := New(newFakeSource(), Config{PollInterval: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	s.mu.Lock()
	for i := range n {
		a, b := net.Pipe()
		tb.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		sub := newSubscriber(s, a, false)
		sub.filter.Store(mustFilter(tb, nil, []string{fmt.Sprintf("did:plc:%024d", i)}))
		s.goLiveLocked(sub, 0, 0)
	}
	s.mu.Unlock()
	tops := make([]testOp, ops)
	for i := range tops {
		tops[i] = testOp{"create", fmt.Sprintf("app.bsky.feed.like/%d", i), postRecord("like")}
	}
	return s, commitFrame(alice, "3lbwsi4hzvk2a", tops...)
}

// BenchmarkFanoutDIDFiltered measures the pump's cost for a 200-op commit
// that none of 1,000 DID-filtering subscribers wants.
func BenchmarkFanoutDIDFiltered(b *testing.B) {
	s, frame := didFilteredRig(b, 1000, 200)
	seq := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		seq++
		_ = s.pumpEvent(seq, secondMS, frame)
	}
	if n := s.m.encoded.Get(); n != 0 {
		b.Fatalf("%d encodings, want none", n)
	}
}
