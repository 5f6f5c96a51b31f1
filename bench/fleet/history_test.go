package fleet

import (
	"testing"
	"time"
)

// TestHistory checks eviction and cursor positioning, including
// live-only entries, which carry the seq they follow.
func TestHistory(t *testing.T) {
	h := history{max: 4}
	for seq := int64(1); seq <= 3; seq++ {
		h.add(entry{seq: seq})
	}
	h.add(entry{seq: 3, flags: flagLiveOnly})
	h.add(entry{seq: 4})
	h.add(entry{seq: 5}) // evicts seqs 1 and 2
	if h.first != 2 || len(h.entries) != 4 {
		t.Fatalf("first %d len %d", h.first, len(h.entries))
	}
	f := func(cursor, wantPos int64, wantOutdated bool) {
		t.Helper()
		pos, out := h.after(cursor)
		if pos != wantPos || out != wantOutdated {
			t.Errorf("after(%d) = %d,%v want %d,%v", cursor, pos, out, wantPos, wantOutdated)
		}
	}
	// Entries now: pos2 seq3, pos3 live(3), pos4 seq4, pos5 seq5.
	f(0, 2, false)
	f(1, 2, true)
	f(2, 2, false)
	f(3, 4, false)
	f(5, 6, false)
	if h.oldestSeq() != 3 {
		t.Errorf("oldest %d", h.oldestSeq())
	}
}

// BenchmarkStep measures one live action: plan, sign, publish.
func BenchmarkStep(b *testing.B) {
	f, err := New(Options{Workload: Workload{Hosts: 10, AccountsPerHost: 10, Seed: 1, Start: time.Now()}})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Step(); err != nil {
			b.Fatal(err)
		}
	}
}
