package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/internal/fixtures"
	"github.com/atrelay/relay/store"
)

// fakeIDs is an Identities with a cache in front of "the network" (docs):
// Lookup serves the cache, else resolves from docs and caches; Purge
// empties the cache entry. Tests make the cache stale to exercise the
// re-resolve paths, and count lookups and purges.
type fakeIDs struct {
	docs    map[string]identity.Identity
	cache   map[string]identity.Identity
	lookups int
	purges  int
}

func newFakeIDs() *fakeIDs {
	return &fakeIDs{docs: map[string]identity.Identity{}, cache: map[string]identity.Identity{}}
}

// withDocs is a new fakeIDs serving f's documents, with its own cache
// and counters, so a case may change its documents without touching f.
func (f *fakeIDs) withDocs() *fakeIDs {
	g := newFakeIDs()
	maps.Copy(g.docs, f.docs)
	return g
}

func (f *fakeIDs) Lookup(_ context.Context, did string) (identity.Identity, error) {
	f.lookups++
	if id, ok := f.cache[did]; ok {
		return id, nil
	}
	id, ok := f.docs[did]
	if !ok {
		return identity.Identity{}, identity.ErrNotFound
	}
	f.cache[did] = id
	return id, nil
}

func (f *fakeIDs) Purge(did string) {
	f.purges++
	delete(f.cache, did)
}

// captureNow is a clock at which every rev of realpds-2 is in the past.
var captureNow = time.Date(2026, 11, 25, 22, 21, 0, 0, time.UTC)

// captureHosts are the realpds-2 host names, by file index.
var captureHosts = [2]string{"localhost:5201", "localhost:5202"}

// capture is the decompressed realpds-2 frames, per host, and the
// identities of its DID documents.
type capture struct {
	frames [2][][]byte
	ids    map[string]identity.Identity
}

// loadCapture reads shared/captures/realpds-2 once per test binary.
var loadCapture = sync.OnceValues(func() (*capture, error) {
	c := &capture{ids: map[string]identity.Identity{}}
	for i := range c.frames {
		frames, err := fixtures.CaptureFrames(fixtures.RealPDS2Host(i))
		if err != nil {
			return nil, err
		}
		c.frames[i] = frames
	}
	var docs map[string]json.RawMessage
	b, err := os.ReadFile(fixtures.Path("captures/realpds-2/dids.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &docs); err != nil {
		return nil, err
	}
	for did, doc := range docs {
		id, err := identity.ParseDocument(did, doc, true)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", did, err)
		}
		c.ids[did] = id
	}
	return c, nil
})

func getCapture(tb testing.TB) *capture {
	tb.Helper()
	c, err := loadCapture()
	if err != nil {
		tb.Fatalf("capture realpds-2: %v", err)
	}
	return c
}

// idsFor returns a fakeIDs serving the capture's documents.
func (c *capture) idsFor() *fakeIDs {
	f := newFakeIDs()
	for k, v := range c.ids {
		f.docs[k] = v
	}
	return f
}

// accounts is a test harness's account table: the relay state the engine
// would keep, updated by the spec's rules for each accepted event.
type accounts map[string]*AccountState

func (a accounts) get(did []byte) *AccountState {
	st, ok := a[string(did)]
	if !ok {
		st = &AccountState{}
		a[string(did)] = st
	}
	return st
}

// accept stores an accepted verdict's new state (copied out of the frame).
func (a accounts) accept(did []byte, host string, vd *Verdict) {
	st := a.get(did)
	if !st.Known {
		st.Known, st.Upstream, st.Local = true, store.StatusActive, store.LocalActive
	}
	st.Host = host
	st.Rev = bytes.Clone(vd.NewState.Rev)
	st.Commit = vd.NewState.Commit.Clone()
	st.Data = vd.NewState.Data.Clone()
}

// applyAccount applies an #account event from the account's host (spec
// §13.3): create the account if new, set the upstream status.
func (a accounts) applyAccount(ev *event.Account, host string) {
	st := a.get(ev.DID)
	if !st.Known {
		st.Known, st.Host, st.Local = true, host, store.LocalActive
	}
	st.Upstream = store.ParseAccountStatus(ev.Active, ev.Status)
}

// mustCID decodes a CID string constant.
func mustCID(s string) cid.CID { return cid.MustDecode(s) }

// sample is one captured #commit frame with the state the relay holds for
// its account just before it, on host 0 of realpds-2.
type sample struct {
	name  string
	seq   int64
	frame []byte
	st    AccountState
}

// sampleSeqs are host-0 commits worth fuzzing and benchmarking (FORMAT.md
// "Edge cases"): a typical single create, the commit-block-first delete,
// an emptying delete, multi-op root moves, and the most extreme commit.
var sampleSeqs = map[int64]string{
	324: "commit-first delete", 337: "delete empties tree", 371: "create after empty",
	525: "multi-op root move", 1388: "multi-op root move", 3457: "root falls two layers",
	4419: "root layer 5 create", 4424: "root rises four layers",
}

// loadSamples replays host 0 of the capture up to the last sample seq,
// once per test binary, and keeps the sample frames with their pre-state.
var loadSamples = sync.OnceValues(func() ([]sample, error) {
	c, err := loadCapture()
	if err != nil {
		return nil, err
	}
	v := New(Config{Now: func() time.Time { return captureNow }})
	ids := c.idsFor()
	accts := accounts{}
	var d event.Decoder
	var m event.Message
	var out []sample
	typical := false
	for _, frame := range c.frames[0] {
		if err := d.Decode(frame, &m); err != nil {
			return nil, err
		}
		switch m.Kind {
		case event.KindAccount:
			accts.applyAccount(&m.Account, captureHosts[0])
		case event.KindCommit:
			cm := &m.Commit
			st := accts.get(cm.Repo)
			name, want := sampleSeqs[cm.Seq]
			if !want && !typical && st.Rev != nil && len(cm.Ops) == 1 && string(cm.Ops[0].Action) == "create" &&
				cm.Seq > 2000 && len(cm.Blocks) > 1500 && len(cm.Blocks) < 2500 {
				name, want, typical = "typical single create", true, true
			}
			if want {
				cp := *st
				cp.Rev, cp.Commit, cp.Data = bytes.Clone(st.Rev), st.Commit.Clone(), st.Data.Clone()
				out = append(out, sample{name: name, seq: cm.Seq, frame: frame, st: cp})
			}
			vd := v.Commit(context.Background(), cm, captureHosts[0], st, ids)
			if vd.Action != Accept {
				return nil, fmt.Errorf("seq %d: %s", cm.Seq, vd.Reason)
			}
			accts.accept(cm.Repo, captureHosts[0], &vd)
			if cm.Seq >= 4424 {
				return out, nil
			}
		}
	}
	return nil, errors.New("capture ended before the last sample")
})

func getSamples(tb testing.TB) []sample {
	tb.Helper()
	s, err := loadSamples()
	if err != nil {
		tb.Fatalf("capture samples: %v", err)
	}
	return s
}
