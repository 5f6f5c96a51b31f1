package store

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/atrelay/relay/internal/testutil"
)

// seqFramer is a test frame: be64(seq) ‖ body, so tests can check that the
// frame a consumer reads carries the seq the store assigned.
type seqFramer struct{ body []byte }

func (f *seqFramer) AppendFrame(dst []byte, seq Seq) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(seq))
	return append(dst, f.body...)
}

// frameSeq extracts the seq from a seqFramer frame.
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
