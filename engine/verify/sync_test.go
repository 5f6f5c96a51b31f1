package verify

import (
	"bytes"
	"context"
	"testing"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/store"
)

func TestSync(t *testing.T) {
	w := newWorld(t, atcrypto.K256, 10)
	// The relay missed two commits; the #sync brings it to the head.
	w.apply([]repoWrite{w.create()})
	w.apply([]repoWrite{w.create()})
	s, err := w.r.SyncCommit()
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := atcrypto.GeneratePrivateKey(atcrypto.K256)
	type env struct {
		s    *event.Sync
		st   AccountState
		ids  *fakeIDs
		cfg  Config
		host string
	}
	cases := []struct {
		name   string
		mut    func(e *env)
		action Action
		want   Reason
	}{
		{name: "newer rev resets state", mut: func(e *env) {}, action: Accept},
		{name: "new account", mut: func(e *env) { e.st = AccountState{} }, action: Accept},
		{name: "same rev", mut: func(e *env) { e.st.Rev = bytes.Clone(e.s.Rev) }, action: Accept, want: ReasonNone},
		{name: "older rev", mut: func(e *env) { e.st.Rev = []byte("zzzzzzzzzzzzz") }, action: Ignore, want: ReasonStaleRev},
		{name: "bad did", mut: func(e *env) { e.s.DID = []byte("did:web:") }, want: ReasonBadDID},
		{name: "wrong host", mut: func(e *env) { e.host = "x.example.com" }, want: ReasonWrongHost},
		{name: "inactive", mut: func(e *env) { e.st.Upstream = store.StatusSuspended }, want: ReasonInactive},
		{name: "bad rev", mut: func(e *env) { e.s.Rev = []byte("x") }, want: ReasonBadRev},
		{name: "blocks over lexicon limit", mut: func(e *env) { e.cfg.Limits.MaxSyncBlocksBytes = len(e.s.Blocks) - 1 }, want: ReasonBlocksTooLarge},
		{name: "empty blocks", mut: func(e *env) { e.s.Blocks = nil }, want: ReasonEmptyBlocks},
		{name: "corrupt block", mut: func(e *env) { e.s.Blocks[len(e.s.Blocks)-2] ^= 0x40 }, want: ReasonBadCAR},
		{name: "did mismatch", mut: func(e *env) {
			const other = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
			e.ids.docs[other] = identity.Identity{DID: other, Key: w.key.Public(), PDSHost: worldHost}
			e.s.DID = []byte(other)
		}, want: ReasonCommitDIDMismatch},
		{name: "rev mismatch", mut: func(e *env) { e.s.Rev = []byte("7zzzzzzzzzzzz") }, want: ReasonCommitRevMismatch},
		{name: "wrong key", mut: func(e *env) {
			id := e.ids.docs[worldDID]
			id.Key = otherKey.Public()
			e.ids.docs[worldDID] = id
		}, want: ReasonBadSignature},
		{name: "bad time", mut: func(e *env) { e.s.Time = []byte("2026-13-01T00:00:00Z") }, want: ReasonBadTime},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cp := *s
			cp.DID, cp.Rev, cp.Blocks, cp.Time = bytes.Clone(s.DID), bytes.Clone(s.Rev), bytes.Clone(s.Blocks), bytes.Clone(s.Time)
			e := &env{s: &cp, st: w.st, ids: w.ids.withDocs(), host: worldHost}
			tc.mut(e)
			vd := w.validator(e.cfg).Sync(context.Background(), e.s, e.host, &e.st, e.ids)
			want := tc.action
			if want == 0 {
				want = Drop
			}
			if vd.Action != want || vd.Reason != tc.want {
				t.Fatalf("got %s, want %s %s", vd, want, tc.want)
			}
			if want == Accept && (!vd.NewState.Commit.Equal(w.r.CommitCID()) || !vd.NewState.Data.Equal(w.r.Data()) ||
				!bytes.Equal(vd.NewState.Rev, e.s.Rev)) {
				t.Errorf("sync state %+v", vd.NewState)
			}
		})
	}
	// After the sync, the next commit continues the chain from it.
	vd := w.validator(Config{}).Sync(context.Background(), s, worldHost, &w.st, w.ids)
	(accounts{worldDID: &w.st}).accept(s.DID, worldHost, &vd)
	next := w.apply([]repoWrite{w.create()})
	if vd := w.check(Config{}, next); vd.Action != Accept || vd.Break != BreakNone {
		t.Fatalf("commit after sync: %s", vd)
	}
}
