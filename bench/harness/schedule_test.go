package harness

import (
	"bytes"
	"hash/maphash"
	"testing"

	"github.com/atrelay/relay/bench/capture"
)

// TestScheduleFirstOf: with a host's #identity and #account frames left
// out, an account's first commit is its first frame, and only those are
// in firstOf (the known-accounts latency leaves them out); with every
// frame kept, no commit of an account created in the capture is.
func TestScheduleFirstOf(t *testing.T) {
	c, recs := sharedFrames(t, 1, 400)
	var commitsOnly []capture.Record
	firsts := map[string][]byte{} // did → rev of its first commit
	commits := 0
	for _, r := range recs[0] {
		info, err := capture.PeekFrame(r.Frame)
		if err != nil {
			t.Fatal(err)
		}
		if info.Type != "#commit" {
			continue
		}
		commits++
		commitsOnly = append(commitsOnly, r)
		var fi frameInfo
		if err := scanFrame(r.Frame, &fi); err != nil {
			t.Fatal(err)
		}
		if _, ok := firsts[info.DID]; !ok {
			firsts[info.DID] = bytes.Clone(fi.rev)
		}
	}
	if len(firsts) < 2 || len(firsts) == commits {
		t.Fatalf("%d accounts over %d commits: the capture does not exercise firstOf", len(firsts), commits)
	}
	s, err := newSchedule(writeCapture(t, c, commitsOnly), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.firstOf) != len(firsts) {
		t.Fatalf("%d first commits in the schedule, want %d", len(s.firstOf), len(firsts))
	}
	var h maphash.Hash
	h.SetSeed(s.seed)
	for did, rev := range firsts {
		if _, ok := s.firstOf[commitKey(&h, []byte(did), rev)]; !ok {
			t.Fatalf("%s's first commit (rev %s) not in firstOf", did, rev)
		}
	}

	all, err := newSchedule(writeCapture(t, c, recs[0]), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(all.firstOf) != 0 {
		t.Errorf("%d commits marked first though every account's #identity comes before them", len(all.firstOf))
	}
}

// writeCapture is a one-host capture of recs with c's first source and
// identities, opened for reading.
func writeCapture(t *testing.T, c *capture.Capture, recs []capture.Record) *capture.Capture {
	t.Helper()
	hdr := capture.Header{Created: c.Header.Created, Note: "schedule test", Sources: c.Header.Sources[:1]}
	hdr.Sources[0].Frames = int64(len(recs))
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, hdr)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	w.SetSnapshot(c.Identities)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := capture.OpenReaderAt(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	return out
}
