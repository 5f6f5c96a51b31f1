package harness

import (
	"bytes"
	"hash/maphash"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/relay/bench/capture"
)

// TestScheduleCold: a commit is cold (the known-accounts latency leaves it
// out) when it comes less than coldWindow, at the replay's pace, after its
// account's first frame: the first commit of an account whose #identity is
// left out, and the commits that follow a first frame closely. The frames
// are re-timed a tenth of a second apart, so the window holds twenty of
// them at speed 1 and forty at speed 2.
func TestScheduleCold(t *testing.T) {
	c, recs := sharedFrames(t, 1, 400)
	base := recs[0][0].RecvTime
	for i := range recs[0] {
		recs[0][i].RecvTime = base + int64(i)*int64(100*time.Millisecond)
	}
	var commitsOnly []capture.Record
	for _, r := range recs[0] {
		if info, err := capture.PeekFrame(r.Frame); err != nil {
			t.Fatal(err)
		} else if info.Type == "#commit" {
			commitsOnly = append(commitsOnly, r)
		}
	}
	for _, tc := range []struct {
		name  string
		recs  []capture.Record
		speed float64
	}{
		{"commits only", commitsOnly, 1},
		{"every frame", recs[0], 1},
		{"every frame at speed 2", recs[0], 2},
	} {
		want, commits := wantCold(t, tc.recs, tc.speed)
		if len(want) == 0 || len(want) == commits {
			t.Fatalf("%s: %d cold of %d commits: the capture does not exercise the window", tc.name, len(want), commits)
		}
		s, err := newSchedule(writeCapture(t, c, tc.recs), tc.speed)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.cold) != len(want) {
			t.Errorf("%s: %d cold commits in the schedule, want %d of %d", tc.name, len(s.cold), len(want), commits)
		}
		var h maphash.Hash
		h.SetSeed(s.seed)
		for key := range want {
			did, rev, _ := strings.Cut(key, " ")
			if _, ok := s.cold[commitKey(&h, []byte(did), []byte(rev))]; !ok {
				t.Errorf("%s: %s's commit %s not cold", tc.name, did, rev)
			}
		}
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
