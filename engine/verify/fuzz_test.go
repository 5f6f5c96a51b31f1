package verify

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/identity"
)

// FuzzValidateCommit feeds mutated real commits (capture realpds-2, host
// 0) through decoding and validation against the state the relay held
// before each. Nothing may panic, and nothing may be accepted unless its
// commit block is one of the seeds' (same CID, hence same signed bytes):
// every other byte the commit hashes or signs must make it fail.
func FuzzValidateCommit(f *testing.F) {
	samples := getSamples(f)
	states := map[string]AccountState{}
	commits := map[string]bool{}
	var d event.Decoder
	var m event.Message
	for _, s := range samples {
		f.Add(s.frame)
		if err := d.Decode(s.frame, &m); err != nil {
			f.Fatal(err)
		}
		states[string(m.Commit.Repo)] = s.st
		commits[string(m.Commit.Commit)] = true
	}
	c := getCapture(f)
	v := New(Config{Now: func() time.Time { return captureNow }})
	f.Fuzz(func(t *testing.T, frame []byte) {
		if err := d.Decode(frame, &m); err != nil || m.Kind != event.KindCommit {
			return
		}
		st := states[string(m.Commit.Repo)]
		ids := &fakeIDs{docs: c.ids, cache: map[string]identity.Identity{}}
		vd := v.Commit(context.Background(), &m.Commit, captureHosts[0], &st, ids)
		if vd.Action == Accept && !commits[string(vd.NewState.Commit)] {
			t.Fatalf("accepted a commit block that is not a seed's: %s", vd.NewState.Commit)
		}
		if vd.Action == 0 || (vd.Action == Drop && vd.Reason == ReasonNone) {
			t.Fatalf("incomplete verdict %s", vd)
		}
	})
}

// Every single-bit flip in blocks of a real commit is rejected: each byte
// of the CAR is either structure, a hashed block, or the root CID.
func TestBlocksBitFlipsRejected(t *testing.T) {
	c := getCapture(t)
	v := New(Config{Now: func() time.Time { return captureNow }})
	var d event.Decoder
	var m event.Message
	for _, s := range getSamples(t) {
		t.Run(s.name, func(t *testing.T) {
			if err := d.Decode(s.frame, &m); err != nil {
				t.Fatal(err)
			}
			ids := &fakeIDs{docs: c.ids, cache: map[string]identity.Identity{}}
			st := s.st
			if vd := v.Commit(context.Background(), &m.Commit, captureHosts[0], &st, ids); vd.Action != Accept {
				t.Fatalf("unmodified: %s", vd)
			}
			orig := bytes.Clone(m.Commit.Blocks)
			reasons := map[Reason]int{}
			for i := range orig {
				for _, bit := range []byte{0x01, 0x80} {
					m.Commit.Blocks = bytes.Clone(orig)
					m.Commit.Blocks[i] ^= bit
					vd := v.Commit(context.Background(), &m.Commit, captureHosts[0], &st, ids)
					if vd.Action == Accept {
						t.Fatalf("flip of bit %#x at byte %d accepted", bit, i)
					}
					reasons[vd.Reason]++
				}
			}
			t.Logf("seq %d, %d bytes: %v", s.seq, len(orig), reasons)
		})
	}
}
