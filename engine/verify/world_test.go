package verify

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/atproto/mst"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/internal/repo"
)

const (
	worldDID  = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	worldHost = "pds.example.com"
)

// worldStart is the instant the world's repository clock starts from.
var worldStart = time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC)

// world is one account on one PDS, written with internal/repo and validated
// against the relay state of its last accepted commit.
type world struct {
	t    testing.TB
	key  *atcrypto.PrivateKey
	r    *repo.Repo
	ids  *fakeIDs
	st   AccountState
	now  time.Time
	tick time.Duration
	// rkeys are the app.bsky.feed.post record keys newWorld created.
	rkeys []string
}

// newWorld makes a repository with a genesis commit and n records, all
// accepted into st.
func newWorld(t testing.TB, curve atcrypto.Curve, n int) *world {
	t.Helper()
	key, err := atcrypto.GeneratePrivateKey(curve)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, key: key, ids: newFakeIDs(), now: worldStart, tick: time.Millisecond}
	w.r, err = repo.New(worldDID, key, repo.Options{Now: func() time.Time { w.now = w.now.Add(w.tick); return w.now }})
	if err != nil {
		t.Fatal(err)
	}
	w.ids.docs[worldDID] = identity.Identity{DID: worldDID, Key: key.Public(), PDSHost: worldHost}
	w.mustAccept(w.apply(nil))
	for i := 0; i < n; i += 5 {
		var ws []repo.Write
		for j := i; j < min(i+5, n); j++ {
			ws = append(ws, w.create())
			w.rkeys = append(w.rkeys, ws[len(ws)-1].RKey)
		}
		w.mustAccept(w.apply(ws))
	}
	return w
}

// validator returns a Validator whose clock sits just after the world's.
func (w *world) validator(cfg Config) *Validator {
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return w.now.Add(time.Second) }
	}
	return New(cfg)
}

func (w *world) create() repo.Write {
	return repo.Write{Action: mst.ActionCreate, Collection: "app.bsky.feed.post", RKey: w.r.NextTID(),
		Record: repo.PostRecord("hello "+w.r.NextTID(), w.now)}
}

func (w *world) apply(ws []repo.Write) *event.Commit {
	w.t.Helper()
	ev, err := w.r.Apply(ws)
	if err != nil {
		w.t.Fatal(err)
	}
	return ev
}

// check validates ev against the world's state with a fresh Validator.
func (w *world) check(cfg Config, ev *event.Commit) Verdict {
	return w.validator(cfg).Commit(context.Background(), ev, worldHost, &w.st, w.ids)
}

// mustAccept validates ev strictly and stores the new state.
func (w *world) mustAccept(ev *event.Commit) {
	w.t.Helper()
	vd := w.check(Config{}, ev)
	if vd.Action != Accept || vd.Break != BreakNone {
		w.t.Fatalf("valid commit: %s %s (%v) break %s", vd.Action, vd.Reason, vd.Err, vd.Break)
	}
	accts := accounts{worldDID: &w.st}
	accts.accept(ev.Repo, worldHost, &vd)
}

// blocksOf parses a CAR into its root and blocks (copies).
func blocksOf(t testing.TB, b []byte) (cid.CID, []car.Block) {
	t.Helper()
	var rd car.Reader
	if err := rd.Reset(b, car.Options{}); err != nil {
		t.Fatal(err)
	}
	out := make([]car.Block, len(rd.Blocks))
	for i, bl := range rd.Blocks {
		out[i] = car.Block{CID: bl.CID.Clone(), Data: bytes.Clone(bl.Data)}
	}
	return rd.Root().Clone(), out
}

// buildCAR writes a CAR with root and blocks.
func buildCAR(root cid.CID, blocks []car.Block) []byte {
	out := car.AppendHeader(nil, root)
	for _, b := range blocks {
		out = car.AppendBlock(out, b.CID, b.Data)
	}
	return out
}

// withoutBlock returns ev's CAR minus the block c.
func withoutBlock(t testing.TB, ev *event.Commit, c cid.CID) []byte {
	t.Helper()
	root, bl := blocksOf(t, ev.Blocks)
	var keep []car.Block
	for _, b := range bl {
		if !b.CID.Equal(c) {
			keep = append(keep, b)
		}
	}
	if len(keep) != len(bl)-1 {
		t.Fatalf("block %s not in the CAR", c)
	}
	return buildCAR(root, keep)
}

// replaceCommit swaps ev's commit block for block (new CID: the CAR root
// and ev.Commit follow).
func replaceCommit(t testing.TB, ev *event.Commit, block []byte) {
	t.Helper()
	_, bl := blocksOf(t, ev.Blocks)
	nc := cid.Sum(cid.CodecDagCBOR, block)
	for i := range bl {
		if bl[i].CID.Equal(ev.Commit) {
			bl[i] = car.Block{CID: nc, Data: block}
		}
	}
	ev.Blocks, ev.Commit = buildCAR(nc, bl), nc
}

// resign replaces ev's commit block with encode's output, signed with the
// world's key: encode(nil) must give the bytes to sign and encode(sig) the
// signed block.
func (w *world) resign(ev *event.Commit, encode func(sig []byte) []byte) {
	w.t.Helper()
	sig, err := w.key.Sign(encode(nil))
	if err != nil {
		w.t.Fatal(err)
	}
	replaceCommit(w.t, ev, encode(sig))
}

// commitBlock returns ev's commit block.
func commitBlock(t testing.TB, ev *event.Commit) []byte {
	t.Helper()
	var rd car.Reader
	if err := rd.Reset(ev.Blocks, car.Options{}); err != nil {
		t.Fatal(err)
	}
	b, ok := rd.Get(ev.Commit)
	if !ok {
		t.Fatal("commit block missing")
	}
	return bytes.Clone(b)
}

// cloneCommit deep-copies ev so a mutation cannot leak into another case.
func cloneCommit(ev *event.Commit) *event.Commit {
	c := *ev
	c.Repo, c.Rev, c.Since, c.Blocks, c.Time = bytes.Clone(ev.Repo), bytes.Clone(ev.Rev), bytes.Clone(ev.Since), bytes.Clone(ev.Blocks), bytes.Clone(ev.Time)
	c.Commit, c.PrevData = ev.Commit.Clone(), ev.PrevData.Clone()
	c.Ops = make([]event.Op, len(ev.Ops))
	for i, op := range ev.Ops {
		c.Ops[i] = event.Op{Action: bytes.Clone(op.Action), Path: bytes.Clone(op.Path), CID: op.CID.Clone(), Prev: op.Prev.Clone()}
	}
	return &c
}

// repoWrite shortens repo.Write in tables.
type repoWrite = repo.Write
