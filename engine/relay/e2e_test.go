package relay

import (
	"bytes"
	"context"
	"testing"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/engine/verify"
	"github.com/atrelay/relay/store"
)

// TestEndToEndCapture replays the realpds-2 capture (2 hosts, 120 accounts,
// 18,694 frames) through the relay to three live consumers and checks that
// every frame is accepted, the account state equals final-state.json, and
// each consumer gets every event once, in seq order, re-verifiable.
func TestEndToEndCapture(t *testing.T) {
	fl := startFleet(t, true)
	h := startRelay(t, fl, t.TempDir(), testConfig(), store.NoSync)
	defer h.stop()
	var consumers []*consumer
	for i := 0; i < 3; i++ {
		consumers = append(consumers, dialConsumer(t, h.addr, -1))
	}
	h.crawlAll()
	fl.Replay.Start()
	h.waitCaughtUp()

	total := 0
	for _, fh := range fl.Replay.Hosts() {
		total += fh.Frames
	}
	h.noLosses(t)
	newest := int(h.st.NewestSeq())
	if newest != total {
		t.Errorf("logged %d events, want every one of the %d frames", newest, total)
	}

	fs := readFinalState(t)
	var a store.Account
	for did, want := range fs.Accounts {
		ok, err := h.st.GetAccount([]byte(did), &a)
		if err != nil || !ok {
			t.Fatalf("account %s: found=%v err=%v", did, ok, err)
		}
		if string(a.Rev) != want.Rev || cid.CID(a.Commit).String() != want.CID || cid.CID(a.Data).String() != want.Data {
			t.Errorf("%s: rev/cid/data %s %s %s, want %s %s %s", did, a.Rev, cid.CID(a.Commit), cid.CID(a.Data), want.Rev, want.CID, want.Data)
		}
		if a.Active() != want.Active {
			t.Errorf("%s: active %v, want %v", did, a.Active(), want.Active)
		}
	}

	for i, c := range consumers {
		frames := c.waitFrames(t, total)
		checkStream(t, h, frames, 1)
		if len(frames) != total {
			t.Errorf("consumer %d: %d frames, want %d", i, len(frames), total)
		}
	}
	// A late consumer replays the same log from disk.
	late := dialConsumer(t, h.addr, 0)
	checkStream(t, h, late.waitFrames(t, total), 1)

	// A local takedown emits the relay's own #account to live consumers.
	var did string
	for d := range fs.Accounts {
		did = d
		break
	}
	if err := h.r.Takedown(context.Background(), did); err != nil {
		t.Fatal(err)
	}
	frames := consumers[0].waitFrames(t, total+1)
	var dec event.Decoder
	var m event.Message
	if err := dec.Decode(frames[total], &m); err != nil || m.Kind != event.KindAccount ||
		string(m.Account.DID) != did || m.Account.Active || string(m.Account.Status) != "takendown" {
		t.Fatalf("takedown frame: %v %+v", err, m.Account)
	}
}

// checkStream checks a consumer's frames: seqs contiguous from first, each
// frame byte-identical to the stored one, per-account revs increasing, and
// every #commit re-verifies against the account state the stream itself
// carries (so nothing was reordered, lost or altered).
func checkStream(t *testing.T, h *harness, frames [][]byte, first int64) {
	t.Helper()
	checkStreamBreaks(t, h, frames, first, nil)
}

// checkStreamBreaks is checkStream where accounts for which allowBreak is
// true may carry a chain break (a broken-chain fault), and a #sync resets
// what the stream knows of an account (the next commit starts afresh).
func checkStreamBreaks(t *testing.T, h *harness, frames [][]byte, first int64, allowBreak func(did string) bool) {
	t.Helper()
	var dec event.Decoder
	var m event.Message
	val := verify.New(verify.Config{Now: h.r.now})
	type acct struct{ rev, commit, data []byte }
	states := map[string]*acct{}
	rotatedSeen := map[string]bool{}
	it, err := h.st.NewIterator(store.Seq(first - 1))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for i, f := range frames {
		if err := dec.Decode(f, &m); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		seq, ok := m.Seq()
		if !ok || seq != first+int64(i) {
			t.Fatalf("frame %d: seq %d, want %d", i, seq, first+int64(i))
		}
		if !it.Next() || !bytes.Equal(it.Frame(), f) {
			t.Fatalf("frame %d (seq %d) differs from the stored event", i, seq)
		}
		switch m.Kind {
		case event.KindCommit:
			c := &m.Commit
			st := states[string(c.Repo)]
			vs := verify.AccountState{}
			if st != nil {
				vs = verify.AccountState{Known: true, Host: "", Upstream: store.StatusActive, Local: store.LocalActive,
					Rev: st.rev, Commit: st.commit, Data: st.data}
			}
			id, err := h.ids.Lookup(context.Background(), string(c.Repo))
			if err != nil {
				t.Fatal(err)
			}
			vs.Host = id.PDSHost
			var v verify.Verdict
			if old, ok := h.rotated[string(c.Repo)]; ok && !rotatedSeen[string(c.Repo)] {
				// Commits before the rotation verify with the old key; the
				// first that does not must verify with the new one, and so
				// must every later one.
				prev := vs
				if v = val.Commit(context.Background(), c, id.PDSHost, &prev, fixedIdentity{old}); v.Action != verify.Accept {
					rotatedSeen[string(c.Repo)] = true
				}
			}
			if v.Action != verify.Accept {
				v = val.Commit(context.Background(), c, id.PDSHost, &vs, h.ids)
			}
			broke := v.Break != verify.BreakNone && (allowBreak == nil || !allowBreak(string(c.Repo)))
			if v.Action != verify.Accept || broke {
				t.Fatalf("seq %d: re-verify %v %v %v break %v", seq, v.Action, v.Reason, v.Err, v.Break)
			}
			if c.TooBig || c.Rebase || len(c.Blobs) != 0 {
				t.Fatalf("seq %d: not canonical relay output", seq)
			}
			states[string(c.Repo)] = &acct{append([]byte(nil), c.Rev...), append([]byte(nil), c.Commit...), append([]byte(nil), v.NewState.Data...)}
		case event.KindSync:
			st := states[string(m.Sync.DID)]
			if st != nil && bytes.Compare(m.Sync.Rev, st.rev) < 0 {
				t.Fatalf("seq %d: #sync rev went backwards", seq)
			}
			delete(states, string(m.Sync.DID))
		}
	}
}

// fixedIdentity answers every Lookup with one identity: the checker's view
// of an account before its key rotation.
type fixedIdentity struct{ id identity.Identity }

func (f fixedIdentity) Lookup(context.Context, string) (identity.Identity, error) { return f.id, nil }
func (fixedIdentity) Purge(string)                                                {}
