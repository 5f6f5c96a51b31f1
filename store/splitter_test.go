package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// seqEvents returns one #identity-kind event per seq, each frame naming
// its seq so a replay can be checked byte for byte.
func seqEvents(seqs ...Seq) []SeqEvent {
	evs := make([]SeqEvent, len(seqs))
	for i, s := range seqs {
		evs[i] = SeqEvent{Seq: s, Kind: KindIdentity, DID: did(int(s)), Frame: []byte(fmt.Sprintf("frame %d", s))}
	}
	return evs
}

// TestAppendAtKeepsCallerSeqs logs batches with forward jumps and checks
// the log, its bounds, replay from cursors inside a jump, and that the
// bounds and meta 's' survive a reopen.
func TestAppendAtKeepsCallerSeqs(t *testing.T) {
	fs := vfs.NewMem()
	clock := newFakeClock()
	o := testOptions(fs)
	o.Now = clock.Now
	s := openTest(t, o)
	if got := s.OldestSeq(); got != SeqNone {
		t.Fatalf("fresh OldestSeq %d", got)
	}
	if err := s.AppendAt(seqEvents(1000, 1001, 1002)); err != nil {
		t.Fatal(err)
	}
	// The oldest is the first logged seq, not InitialSeq.
	if o, n := s.OldestSeq(), s.NewestSeq(); o != 1000 || n != 1002 {
		t.Fatalf("bounds %d..%d, want 1000..1002", o, n)
	}
	clock.Advance(2 * time.Second)
	if err := s.AppendAt(seqEvents(1010, 1011)); err != nil {
		t.Fatal(err)
	}
	want := []Seq{1000, 1001, 1002, 1010, 1011}
	check := func(s *Store) {
		t.Helper()
		seqs, frames := collect(t, s, 0)
		if !slices.Equal(seqs, want) {
			t.Fatalf("log %v, want %v", seqs, want)
		}
		for i, f := range frames {
			if w := fmt.Sprintf("frame %d", seqs[i]); string(f) != w {
				t.Fatalf("seq %d frame %q, want %q", seqs[i], f, w)
			}
		}
		// A cursor inside the jump replays from the next logged seq.
		if seqs, _ := collect(t, s, 1005); !slices.Equal(seqs, []Seq{1010, 1011}) {
			t.Fatalf("replay after 1005: %v", seqs)
		}
		// The time index points at the first seq of each second's batch.
		if seq, ok, err := s.SeqAtTime(clock.Now()); err != nil || !ok || seq != 1010 {
			t.Fatalf("SeqAtTime(now) = %d %v %v, want 1010", seq, ok, err)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, o)
	defer s.Close()
	if o, n := s.OldestSeq(), s.NewestSeq(); o != 1000 || n != 1011 {
		t.Fatalf("reopened bounds %d..%d, want 1000..1011", o, n)
	}
	check(s)
}

// TestAppendAtRefusesDisorder shows every bad call is refused whole,
// before anything is written.
func TestAppendAtRefusesDisorder(t *testing.T) {
	s := openTest(t, testOptions(vfs.NewMem()))
	defer s.Close()
	if err := s.AppendAt(seqEvents(5, 6)); err != nil {
		t.Fatal(err)
	}
	bad := func(name string, evs []SeqEvent, want error) {
		t.Helper()
		if err := s.AppendAt(evs); !errors.Is(err, want) {
			t.Errorf("%s: err %v, want %v", name, err, want)
		}
	}
	bad("equal to newest", seqEvents(6, 7), ErrSeqOrder)
	bad("below newest", seqEvents(2), ErrSeqOrder)
	bad("not increasing in the batch", seqEvents(8, 10, 9), ErrSeqOrder)
	bad("duplicate in the batch", seqEvents(8, 8), ErrSeqOrder)
	bad("zero seq", seqEvents(0), ErrSeqOrder)
	bad("seq above MaxSeq", seqEvents(MaxSeq+1), ErrSeqOrder)
	bad("empty frame", []SeqEvent{{Seq: 9, Kind: KindCommit}}, ErrTooLong)
	bad("huge frame", []SeqEvent{{Seq: 9, Kind: KindCommit, Frame: make([]byte, MaxFrameBytes+1)}}, ErrTooLong)
	bad("bad kind", []SeqEvent{{Seq: 9, Kind: 0, Frame: []byte("x")}}, ErrBadKind)
	bad("long DID", []SeqEvent{{Seq: 9, Kind: KindCommit, DID: make([]byte, MaxDIDBytes+1), Frame: []byte("x")}}, ErrTooLong)
	many := make([]Seq, DefaultMaxBatchEvents+1)
	for i := range many {
		many[i] = Seq(10 + i)
	}
	bad("batch too big", seqEvents(many...), ErrBatchTooBig)
	if seqs, _ := collect(t, s, 0); !slices.Equal(seqs, []Seq{5, 6}) {
		t.Fatalf("log after refused calls: %v", seqs)
	}
	if n := s.NewestSeq(); n != 6 {
		t.Fatalf("NewestSeq %d after refused calls", n)
	}
}

// TestAppendAtAfterRetentionEmptied checks that once retention dropped the
// whole log, the next batch's first seq becomes the oldest even after a
// forward jump, so a cursor inside the jump gets OutdatedCursor from the
// hub rather than a silent gap.
func TestAppendAtAfterRetentionEmptied(t *testing.T) {
	clock := newFakeClock()
	o := testOptions(vfs.NewMem())
	o.Now = clock.Now
	o.ReplayWindow = time.Minute
	s := openTest(t, o)
	defer s.Close()
	if err := s.AppendAt(seqEvents(1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	if n, err := s.RunRetention(context.Background()); err != nil || n == 0 {
		t.Fatalf("retention dropped %d: %v", n, err)
	}
	if got := s.OldestSeq(); got != SeqNone {
		t.Fatalf("OldestSeq %d after everything expired", got)
	}
	if err := s.AppendAt(seqEvents(50, 51)); err != nil {
		t.Fatal(err)
	}
	if o, n := s.OldestSeq(), s.NewestSeq(); o != 50 || n != 51 {
		t.Fatalf("bounds %d..%d, want 50..51", o, n)
	}
	_, frames := collect(t, s, 0)
	if len(frames) != 2 || !bytes.Equal(frames[0], []byte("frame 50")) {
		t.Fatalf("log %q", frames)
	}
}

// TestAppendAtAllocs checks the steady-state write path allocates nothing
// of its own (Pebble's batch reuses its buffer).
func TestAppendAtAllocs(t *testing.T) {
	o := testOptions(vfs.NewMem())
	o.Sync = NoSync
	s := openTest(t, o)
	defer s.Close()
	evs := seqEvents(1)
	next := Seq(1)
	run := func() {
		evs[0].Seq = next
		next++
		if err := s.AppendAt(evs); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		run()
	}
	if n := testing.AllocsPerRun(200, run); n > 1 {
		t.Errorf("AppendAt: %.1f allocations per call", n)
	}
}
