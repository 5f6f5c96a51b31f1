// Unit tests of small pieces of the relay without a test file of their own.
package relay

import "testing"

func TestTracker(t *testing.T) {
	var tr tracker
	tr.reset(10)
	g := tr.register(11)
	tr.register(12)
	tr.register(15)
	if low, moved := tr.complete(g, 12); moved || low != 10 {
		t.Fatalf("completing 12 before 11 moved the mark to %d", low)
	}
	if low, _ := tr.complete(g, 11); low != 12 {
		t.Fatalf("low %d, want 12", low)
	}
	tr.reset(0)
	if low, moved := tr.complete(g, 15); moved || low != 0 {
		t.Fatal("a completion from an old generation moved the mark")
	}
	g2 := tr.register(1)
	if low, _ := tr.complete(g2, 1); low != 1 {
		t.Fatalf("low %d, want 1", low)
	}
	if tr.lastSeq() != 1 {
		t.Fatal("lastSeq")
	}
}

func TestBucket(t *testing.T) {
	var b bucket
	now := testEpoch
	b.init(2, now)
	for i := 0; i < 2; i++ {
		if _, ok := b.take(now); !ok {
			t.Fatal("burst refused")
		}
	}
	wait, ok := b.take(now)
	if ok || wait <= 0 {
		t.Fatalf("third event in the same instant: ok=%v wait=%v", ok, wait)
	}
}

// TestTrackerParked: only a parked frame that is its host's lowest
// incomplete seq lets held results pass; a completed, unknown or older
// generation's seq is not marked, and the mark moves with the head.
func TestTrackerParked(t *testing.T) {
	var tr tracker
	tr.reset(0)
	g := tr.generation()
	for _, s := range []int64{1, 2, 3} {
		tr.register(s)
	}
	if tr.markParked(g, 2) {
		t.Fatal("seq 2 reported as the head with seq 1 incomplete")
	}
	if tr.headParked(g) {
		t.Fatal("head parked with seq 1 running")
	}
	tr.complete(g, 1)
	if !tr.headParked(g) {
		t.Fatal("seq 2, parked, is the head: not reported")
	}
	if tr.headParked(g + 1) {
		t.Fatal("head parked reported for another generation")
	}
	if !tr.markParked(g, 2) || tr.markParked(g, 7) || tr.markParked(g+1, 3) {
		t.Fatal("markParked: want true for the head, false for an unknown seq or another generation")
	}
	tr.complete(g, 2)
	if tr.headParked(g) || tr.markParked(g, 2) {
		t.Fatal("completed seq 2 still parked")
	}
	tr.reset(5)
	if tr.headParked(tr.generation()) {
		t.Fatal("parked after a reset")
	}
}
