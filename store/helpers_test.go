package store

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/atrelay/relay/internal/testutil"
)

// Result is what became of one event in a test batch: its outcome and the
// seq it was logged under (SeqNone when dropped).
type Result struct {
	Seq     Seq
	Outcome Outcome
}

// appendEvents writes one group commit with the test frame be64(seq) ‖ body
// for every logged event, so tests can check that the frame a consumer
// reads carries its seq.
func appendEvents(s *Store, events []Event, body []byte, results []Result) ([]Result, error) {
	return appendFunc(s, events, func(int) []byte { return body }, results)
}

// appendFunc is appendEvents with event i's frame body bodyOf(i). It
// appends one Result per event to results.
func appendFunc(s *Store, events []Event, bodyOf func(i int) []byte, results []Result) ([]Result, error) {
	var w testWriter
	err := w.write(s, events, func(i int, seq Seq) []byte {
		return append(binary.BigEndian.AppendUint64(nil, uint64(seq)), bodyOf(i)...)
	})
	if err != nil {
		return results, err
	}
	j := 0
	for _, o := range w.outcomes {
		r := Result{Outcome: o}
		if o.Logged() {
			r.Seq = w.rows[j].Seq
			j++
		}
		results = append(results, r)
	}
	return results, nil
}

// testWriter writes group commits as the relay's sequencer does: Stage,
// the next seqs for the logged events in event order, a frame for each,
// Commit. It reuses its buffers: at steady state it allocates nothing
// beyond what frame does.
type testWriter struct {
	outcomes []Outcome
	rows     []SeqEvent
}

// write commits events with frame(i, seq) as logged event i's frame.
func (w *testWriter) write(s *Store, events []Event, frame func(i int, seq Seq) []byte) error {
	st, outcomes, err := s.Stage(events, w.outcomes[:0])
	w.outcomes = outcomes
	if err != nil {
		return err
	}
	next := s.NewestSeq() + 1
	w.rows = w.rows[:0]
	for i, o := range outcomes {
		if o.Logged() {
			seq := next + Seq(len(w.rows))
			w.rows = append(w.rows, SeqEvent{Seq: seq, Kind: events[i].Kind, DID: events[i].DID, Frame: frame(i, seq)})
		}
	}
	return st.Commit(w.rows)
}

// frameSeq extracts the seq from a test frame.
func frameSeq(t testing.TB, frame []byte) Seq {
	t.Helper()
	if len(frame) < 8 {
		t.Fatalf("frame of %d bytes", len(frame))
	}
	return Seq(binary.BigEndian.Uint64(frame))
}

// newFakeClock is a settable clock at the capture's time.
func newFakeClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2026, 11, 25, 22, 17, 57, 806e6, time.UTC))
}

// testOptions are small, fast options on an in-memory filesystem.
func testOptions(fs vfs.FS) Options {
	return Options{
		FS:                fs,
		BlockCacheBytes:   8 << 20,
		MemTableBytes:     4 << 20,
		RetentionInterval: time.Hour,
	}
}

func openTest(t testing.TB, o Options) *Store {
	t.Helper()
	s, err := Open("db", o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// reopen closes s, failing the test on a close error, and opens the
// store on fs again with testOptions.
func reopen(t testing.TB, s *Store, fs vfs.FS) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return openTest(t, testOptions(fs))
}

func mustHost(t testing.TB, s *Store, name string) Host {
	t.Helper()
	h, err := s.CreateHost(NewHost{Hostname: name, Status: HostActive, AccountLimit: 100})
	if err != nil {
		t.Fatalf("CreateHost(%s): %v", name, err)
	}
	return h
}

func did(i int) []byte { return []byte(fmt.Sprintf("did:plc:%024d", i)) }

// rev returns a TID-shaped rev that sorts with n.
func rev(n int) []byte { return []byte(fmt.Sprintf("3n%011d", n)) }

// collect replays the log after cursor into seqs and frame copies.
func collect(t testing.TB, s *Store, cursor Seq) (seqs []Seq, frames [][]byte) {
	t.Helper()
	it, err := s.NewIterator(cursor)
	if err != nil {
		t.Fatalf("NewIterator: %v", err)
	}
	defer it.Close()
	for it.Next() {
		seqs = append(seqs, it.Seq())
		frames = append(frames, append([]byte(nil), it.Frame()...))
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterate: %v", err)
	}
	return seqs, frames
}
