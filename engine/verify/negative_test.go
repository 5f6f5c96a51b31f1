package verify

import (
	"context"
	"math/big"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/dagcbor"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/atproto/mst"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/internal/repo"
	"github.com/atrelay/relay/store"
)

// caseEnv is what one negative case may change: a deep copy of the valid
// commit, the account state, the identities, the config and the host.
type caseEnv struct {
	w    *world
	ev   *event.Commit
	st   AccountState
	ids  *fakeIDs
	cfg  Config
	host string
}

// groupOrder is n for each curve, to turn a signature's s into n−s.
var groupOrder = map[atcrypto.Curve]string{
	atcrypto.P256: "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551",
	atcrypto.K256: "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
}

// encodeCommit builds a commit map from (key, encoded value) pairs written
// in the given order, so cases can make non-canonical or odd commits.
func encodeCommit(pairs ...any) []byte {
	b := dagcbor.AppendMapHeader(nil, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		b = dagcbor.AppendText(b, pairs[i].(string))
		b = append(b, pairs[i+1].([]byte)...)
	}
	return b
}

func text(s string) []byte     { return dagcbor.AppendText(nil, s) }
func link(c cid.CID) []byte    { return dagcbor.AppendCIDLink(nil, c) }
func uint64v(v uint64) []byte  { return dagcbor.AppendUint(nil, v) }
func bytesv(b []byte) []byte   { return dagcbor.AppendBytes(nil, b) }
func null() []byte             { return dagcbor.AppendNull(nil) }
func sigOr(sig []byte) []byte  { return bytesv(append(sig, make([]byte, 64-len(sig))...)) }
func rawCID(s string) cid.CID  { return cid.Sum(cid.CodecRaw, []byte(s)) }
func nodeCID(s string) cid.CID { return cid.Sum(cid.CodecDagCBOR, []byte(s)) }

func TestCommitNegative(t *testing.T) {
	for _, curve := range []atcrypto.Curve{atcrypto.P256, atcrypto.K256} {
		t.Run(curve.String(), func(t *testing.T) { runNegative(t, curve) })
	}
}

func runNegative(t *testing.T, curve atcrypto.Curve) {
	w := newWorld(t, curve, 40)
	upd, del := w.rkeys[3], w.rkeys[17]
	base := w.apply([]repo.Write{
		w.create(),
		{Action: mst.ActionUpdate, Collection: "app.bsky.feed.post", RKey: upd, Record: repo.PostRecord("edited", w.now)},
		{Action: mst.ActionDelete, Collection: "app.bsky.feed.post", RKey: del},
	})
	data := w.r.Data()
	rev := base.Rev
	// The commit object as repo writes it, with overrides.
	obj := func(over map[string][]byte) func(sig []byte) []byte {
		return func(sig []byte) []byte {
			f := map[string][]byte{"did": text(worldDID), "rev": text(string(rev)), "data": link(data),
				"prev": null(), "version": uint64v(3)}
			for k, v := range over {
				f[k] = v
			}
			var pairs []any
			for _, k := range []string{"did", "rev", "sig", "data", "prev", "version"} {
				if k == "sig" {
					if sig != nil {
						pairs = append(pairs, k, bytesv(sig))
					}
					continue
				}
				if v, ok := f[k]; ok && v != nil {
					pairs = append(pairs, k, v)
				}
			}
			return encodeCommit(pairs...)
		}
	}
	otherKey, _ := atcrypto.GeneratePrivateKey(curve)

	cases := []struct {
		name   string
		mut    func(e *caseEnv)
		want   Reason
		action Action // Drop when zero
		check  func(t *testing.T, e *caseEnv, vd Verdict)
	}{
		{name: "valid", mut: func(e *caseEnv) {}, action: Accept},
		{name: "did upper case", want: ReasonBadDID, mut: func(e *caseEnv) { e.ev.Repo = []byte("did:plc:EWVI7NXZYOUN6ZHXRHS64OIZ") }},
		{name: "did garbage", want: ReasonBadDID, mut: func(e *caseEnv) { e.ev.Repo = []byte("did:plc:") }},
		{name: "did unsupported method", want: ReasonBadDID, mut: func(e *caseEnv) { e.ev.Repo = []byte("did:key:zQ3sh") }},
		{name: "identity unresolvable", want: ReasonIdentityUnavailable, mut: func(e *caseEnv) { delete(e.ids.docs, worldDID) }},
		{name: "wrong host", want: ReasonWrongHost, mut: func(e *caseEnv) { e.host = "other.example.com" },
			check: func(t *testing.T, e *caseEnv, vd Verdict) {
				if e.ids.purges != 1 {
					t.Errorf("re-resolved %d times, want once", e.ids.purges)
				}
			}},
		{name: "stale cached host re-resolved", action: Accept, mut: func(e *caseEnv) {
			id := e.ids.docs[worldDID]
			id.PDSHost = "old.example.com"
			e.ids.cache[worldDID] = id
		}, check: func(t *testing.T, e *caseEnv, vd Verdict) {
			if e.ids.purges != 1 || vd.Migrated {
				t.Errorf("purges %d migrated %v", e.ids.purges, vd.Migrated)
			}
		}},
		{name: "migration to this host", action: Accept, mut: func(e *caseEnv) { e.st.Host = "old.example.com" },
			check: func(t *testing.T, e *caseEnv, vd Verdict) {
				if !vd.Migrated {
					t.Error("migration not reported")
				}
			}},
		{name: "new account", action: Accept, mut: func(e *caseEnv) { e.st = AccountState{} },
			check: func(t *testing.T, e *caseEnv, vd Verdict) {
				if vd.Break != BreakNone || vd.Migrated {
					t.Errorf("new account: %s", vd)
				}
			}},
		{name: "upstream deactivated", want: ReasonInactive, mut: func(e *caseEnv) { e.st.Upstream = store.StatusDeactivated }},
		{name: "upstream throttled", want: ReasonInactive, mut: func(e *caseEnv) { e.st.Upstream = store.StatusThrottled }},
		{name: "local takedown", want: ReasonInactive, mut: func(e *caseEnv) { e.st.Local = store.LocalTakendown }},
		{name: "status unset", want: ReasonInactive, mut: func(e *caseEnv) { e.st.Local = 0 }},
		{name: "local throttled passes", action: Accept, mut: func(e *caseEnv) { e.st.Local = store.LocalThrottled }},
		{name: "rev not a TID", want: ReasonBadRev, mut: func(e *caseEnv) { e.ev.Rev = []byte("3lmxjza3nva0!") }},
		{name: "rev equal to stored", want: ReasonStaleRev, mut: func(e *caseEnv) { e.st.Rev = e.ev.Rev }},
		{name: "rev below stored", want: ReasonStaleRev, mut: func(e *caseEnv) { e.st.Rev = []byte("zzzzzzzzzzzzz") }},
		{name: "blocks over limit", want: ReasonBlocksTooLarge, mut: func(e *caseEnv) { e.cfg.Limits.MaxCommitBlocksBytes = len(e.ev.Blocks) - 1 }},
		{name: "ops over limit", want: ReasonTooManyOps, mut: func(e *caseEnv) { e.cfg.Limits.MaxOps = 2 }},
		{name: "empty blocks", want: ReasonEmptyBlocks, mut: func(e *caseEnv) { e.ev.Blocks = nil }},
		{name: "CAR garbage", want: ReasonBadCAR, mut: func(e *caseEnv) { e.ev.Blocks = []byte{1, 2, 3} }},
		{name: "CAR block hash mismatch", want: ReasonBadCAR, mut: func(e *caseEnv) { e.ev.Blocks[len(e.ev.Blocks)-1] ^= 1 }},
		{name: "CAR block too large", want: ReasonBlockTooLarge, mut: func(e *caseEnv) { e.cfg.Limits.MaxRecordBytes = 40 }},
		{name: "commit block missing", want: ReasonMissingCommitBlock, mut: func(e *caseEnv) { e.ev.Blocks = withoutBlock(t, e.ev, e.ev.Commit) }},
		{name: "commit version 2", want: ReasonBadCommit, mut: func(e *caseEnv) { w.resign(e.ev, obj(map[string][]byte{"version": uint64v(2)})) }},
		{name: "commit version text", want: ReasonBadCommit, mut: func(e *caseEnv) { w.resign(e.ev, obj(map[string][]byte{"version": text("3")})) }},
		{name: "commit without prev", want: ReasonBadCommit, mut: func(e *caseEnv) { w.resign(e.ev, obj(map[string][]byte{"prev": nil})) }},
		{name: "commit prev not a link", want: ReasonBadCommit, mut: func(e *caseEnv) { w.resign(e.ev, obj(map[string][]byte{"prev": uint64v(0)})) }},
		{name: "commit prev raw CID", want: ReasonBadCommit, mut: func(e *caseEnv) { w.resign(e.ev, obj(map[string][]byte{"prev": link(rawCID("x"))})) }},
		{name: "commit data raw CID", want: ReasonBadCommit, mut: func(e *caseEnv) { w.resign(e.ev, obj(map[string][]byte{"data": link(rawCID("x"))})) }},
		{name: "commit without data", want: ReasonBadCommit, mut: func(e *caseEnv) { w.resign(e.ev, obj(map[string][]byte{"data": nil})) }},
		{name: "commit did invalid", want: ReasonBadCommit, mut: func(e *caseEnv) { w.resign(e.ev, obj(map[string][]byte{"did": text("nope")})) }},
		{name: "commit rev invalid", want: ReasonBadCommit, mut: func(e *caseEnv) { w.resign(e.ev, obj(map[string][]byte{"rev": text("nope")})) }},
		{name: "commit sig 63 bytes", want: ReasonBadCommit, mut: func(e *caseEnv) {
			replaceCommit(t, e.ev, encodeCommit("did", text(worldDID), "rev", text(string(rev)), "sig", bytesv(make([]byte, 63)),
				"data", link(data), "prev", null(), "version", uint64v(3)))
		}},
		{name: "commit not canonical", want: ReasonBadCommit, mut: func(e *caseEnv) {
			replaceCommit(t, e.ev, encodeCommit("version", uint64v(3), "did", text(worldDID), "rev", text(string(rev)),
				"sig", sigOr(nil), "data", link(data), "prev", null()))
		}},
		{name: "commit not a map", want: ReasonBadCommit, mut: func(e *caseEnv) { replaceCommit(t, e.ev, dagcbor.AppendArrayHeader(nil, 0)) }},
		{name: "commit unknown field signed", action: Accept, mut: func(e *caseEnv) {
			// Extra keys are covered by the signature; canonical order puts "zz" after "rev".
			w.resign(e.ev, func(sig []byte) []byte {
				p := []any{"zz", text("x"), "did", text(worldDID), "rev", text(string(rev))}
				if sig != nil {
					p = append(p, "sig", bytesv(sig))
				}
				return encodeCommit(append(p, "data", link(data), "prev", null(), "version", uint64v(3))...)
			})
		}},
		{name: "commit did differs", want: ReasonCommitDIDMismatch, mut: func(e *caseEnv) {
			w.resign(e.ev, obj(map[string][]byte{"did": text("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa")}))
		}},
		{name: "event rev differs", want: ReasonCommitRevMismatch, mut: func(e *caseEnv) { e.ev.Rev = []byte("7zzzzzzzzzzzz") }},
		{name: "event commit CID differs", want: ReasonCommitCIDMismatch, mut: func(e *caseEnv) { e.ev.Commit = e.st.Commit }},
		{name: "future rev", want: ReasonFutureRev, mut: func(e *caseEnv) {
			e.cfg.Now = func() time.Time { return worldStart.Add(-6 * time.Minute) }
		}},
		{name: "rev within tolerance", action: Accept, mut: func(e *caseEnv) {
			e.cfg.Now = func() time.Time { return worldStart.Add(-4 * time.Minute) }
		}},
		{name: "signature by another key", want: ReasonBadSignature, mut: func(e *caseEnv) {
			u := obj(nil)
			sig, _ := otherKey.Sign(u(nil))
			replaceCommit(t, e.ev, u(sig))
		}, check: func(t *testing.T, e *caseEnv, vd Verdict) {
			if e.ids.purges != 1 {
				t.Errorf("re-resolved %d times, want once", e.ids.purges)
			}
		}},
		{name: "signature over other bytes", want: ReasonBadSignature, mut: func(e *caseEnv) {
			sig, _ := w.key.Sign([]byte("something else"))
			replaceCommit(t, e.ev, obj(nil)(sig))
		}},
		{name: "signature high-S", want: ReasonBadSignature, mut: func(e *caseEnv) {
			u := obj(nil)
			sig, _ := w.key.Sign(u(nil))
			n, _ := new(big.Int).SetString(groupOrder[curve], 16)
			s := new(big.Int).Sub(n, new(big.Int).SetBytes(sig[32:]))
			s.FillBytes(sig[32:])
			replaceCommit(t, e.ev, u(sig))
		}, check: func(t *testing.T, e *caseEnv, vd Verdict) {
			if e.ids.purges != 0 {
				t.Errorf("malformed signature triggered %d re-resolves", e.ids.purges)
			}
		}},
		{name: "signature zero", want: ReasonBadSignature, mut: func(e *caseEnv) { replaceCommit(t, e.ev, obj(nil)(make([]byte, 64))) }},
		{name: "rotated key found by re-resolve", action: Accept, mut: func(e *caseEnv) {
			id := e.ids.docs[worldDID]
			id.Key = otherKey.Public()
			e.ids.cache[worldDID] = id
		}, check: func(t *testing.T, e *caseEnv, vd Verdict) {
			if e.ids.purges != 1 || !vd.Identity.Key.Equal(w.key.Public()) {
				t.Errorf("purges %d, verdict key %s", e.ids.purges, vd.Identity.Key)
			}
		}},
		{name: "re-resolve fails after bad signature", want: ReasonIdentityUnavailable, mut: func(e *caseEnv) {
			id := e.ids.docs[worldDID]
			id.Key = otherKey.Public()
			e.ids.cache[worldDID] = id
			delete(e.ids.docs, worldDID)
		}},
		{name: "re-resolve moves host", want: ReasonWrongHost, mut: func(e *caseEnv) {
			id := e.ids.docs[worldDID]
			e.ids.cache[worldDID] = identity.Identity{DID: worldDID, Key: otherKey.Public(), PDSHost: worldHost}
			id.PDSHost = "elsewhere.example.com"
			e.ids.docs[worldDID] = id
		}},
		{name: "tooBig", want: ReasonDeprecatedFlag, mut: func(e *caseEnv) { e.ev.TooBig = true }},
		{name: "rebase", want: ReasonDeprecatedFlag, mut: func(e *caseEnv) { e.ev.Rebase = true }},
		{name: "time garbage", want: ReasonBadTime, mut: func(e *caseEnv) { e.ev.Time = []byte("yesterday") }},
		{name: "since garbage", want: ReasonBadSince, mut: func(e *caseEnv) { e.ev.Since = []byte("bad") }},
		{name: "op action unknown", want: ReasonBadOp, mut: func(e *caseEnv) { e.ev.Ops[0].Action = []byte("frobnicate") }},
		{name: "op path invalid", want: ReasonBadOp, mut: func(e *caseEnv) { e.ev.Ops[0].Path = []byte("nocollection") }},
		{name: "op create with prev", want: ReasonBadOp, mut: func(e *caseEnv) { e.ev.Ops[0].Prev = e.ev.Ops[1].Prev }},
		{name: "op create without cid", want: ReasonBadOp, mut: func(e *caseEnv) { e.ev.Ops[0].CID = nil }},
		{name: "op update cid equals prev", want: ReasonBadOp, mut: func(e *caseEnv) { e.ev.Ops[1].CID = e.ev.Ops[1].Prev }},
		{name: "op update without cid", want: ReasonBadOp, mut: func(e *caseEnv) { e.ev.Ops[1].CID = nil }},
		{name: "op delete with cid", want: ReasonBadOp, mut: func(e *caseEnv) { e.ev.Ops[2].CID = e.ev.Ops[0].CID }},
		{name: "op duplicate path", want: ReasonBadOp, mut: func(e *caseEnv) { e.ev.Ops[2].Path = e.ev.Ops[1].Path }},
		{name: "op duplicate path lenient", want: ReasonBadOp, mut: func(e *caseEnv) {
			e.cfg.Mode = Lenient
			e.ev.Ops[2].Path = e.ev.Ops[1].Path
		}},
		{name: "op delete without prev", want: ReasonBadOp, mut: func(e *caseEnv) { e.ev.Ops[2].Prev = nil }},
		{name: "op delete without prev lenient", action: Accept, mut: func(e *caseEnv) {
			e.cfg.Mode = Lenient
			e.ev.Ops[2].Prev = nil
		}, check: wantTolerated(ReasonLegacyOp)},
		{name: "record block missing", want: ReasonMissingRecord, mut: func(e *caseEnv) { e.ev.Blocks = withoutBlock(t, e.ev, e.ev.Ops[0].CID) }},
		{name: "record block not CBOR", want: ReasonBadRecord, mut: func(e *caseEnv) {
			junk := []byte{0xff}
			c := cid.Sum(cid.CodecDagCBOR, junk)
			root, bl := blocksOf(t, e.ev.Blocks)
			e.ev.Blocks = buildCAR(root, append(bl, car.Block{CID: c, Data: junk}))
			e.ev.Ops[0].CID = c
		}},
		{name: "prevData missing", want: ReasonMissingPrevData, mut: func(e *caseEnv) { e.ev.PrevData = nil }},
		{name: "prevData missing lenient", action: Accept, mut: func(e *caseEnv) {
			e.cfg.Mode = Lenient
			e.ev.PrevData = nil
		}, check: wantTolerated(ReasonMissingPrevData)},
		{name: "prevData missing without state", action: Accept, mut: func(e *caseEnv) {
			e.ev.PrevData = nil
			e.st = AccountState{}
		}},
		{name: "MST root block missing", want: ReasonMissingBlock, mut: func(e *caseEnv) { e.ev.Blocks = withoutBlock(t, e.ev, data) }},
		{name: "MST root block missing lenient", action: Accept, mut: func(e *caseEnv) {
			e.cfg.Mode = Lenient
			e.ev.Blocks = withoutBlock(t, e.ev, data)
		}, check: wantTolerated(ReasonMissingBlock)},
		{name: "prevData wrong", want: ReasonInversionMismatch, mut: func(e *caseEnv) { e.ev.PrevData = nodeCID("other") }},
		{name: "prevData wrong lenient", action: Accept, mut: func(e *caseEnv) {
			e.cfg.Mode = Lenient
			e.ev.PrevData = nodeCID("other")
		}, check: wantTolerated(ReasonInversionMismatch)},
		{name: "op cid not in tree", want: ReasonInversionMismatch, mut: func(e *caseEnv) { e.ev.Ops[0].CID = e.ev.Ops[1].CID }},
		{name: "op update prev wrong", want: ReasonInversionMismatch, mut: func(e *caseEnv) { e.ev.Ops[1].Prev = e.ev.Ops[2].Prev }},
		{name: "op create of unchanged key", want: ReasonMissingBlock, mut: func(e *caseEnv) {
			// Claim the update created its key: undoing that removes a key
			// whose neighbours' nodes the proof rightly does not carry.
			e.ev.Ops[1].Action, e.ev.Ops[1].Prev = []byte("create"), nil
		}},
		{name: "MST node malformed", want: ReasonBadMST, mut: func(e *caseEnv) {
			node := repo.PostRecord("not a node", worldStart)
			nc := cid.Sum(cid.CodecDagCBOR, node)
			root, bl := blocksOf(t, e.ev.Blocks)
			e.ev.Blocks = buildCAR(root, append(bl, car.Block{CID: nc, Data: node}))
			e.ev.Ops = e.ev.Ops[2:] // only the delete: no record lookups
			w.resign(e.ev, obj(map[string][]byte{"data": link(nc)}))
		}},
		{name: "since differs", action: Accept, mut: func(e *caseEnv) { e.st.Rev = []byte("2222222222222") },
			check: func(t *testing.T, e *caseEnv, vd Verdict) {
				if vd.Break != BreakSince {
					t.Errorf("break %s", vd.Break)
				}
			}},
		{name: "since null with state", action: Accept, mut: func(e *caseEnv) { e.ev.Since = nil },
			check: func(t *testing.T, e *caseEnv, vd Verdict) {
				if vd.Break != BreakSince {
					t.Errorf("break %s", vd.Break)
				}
			}},
		{name: "stored data differs", action: Accept, mut: func(e *caseEnv) { e.st.Data = nodeCID("elsewhere") },
			check: func(t *testing.T, e *caseEnv, vd Verdict) {
				if vd.Break != BreakPrevData {
					t.Errorf("break %s", vd.Break)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := &caseEnv{w: w, ev: cloneCommit(base), st: w.st, ids: w.ids.withDocs(), host: worldHost}
			tc.mut(e)
			vd := w.validator(e.cfg).Commit(context.Background(), e.ev, e.host, &e.st, e.ids)
			want := tc.action
			if want == 0 {
				want = Drop
			}
			if vd.Action != want || (want == Drop && vd.Reason != tc.want) {
				t.Fatalf("got %s, want %s %s", vd, want, tc.want)
			}
			if want == Drop && vd.Err == nil {
				t.Errorf("drop without error detail")
			}
			if want == Accept {
				if vd.Reason != ReasonNone || vd.Err != nil || !vd.NewState.Commit.Equal(e.ev.Commit) ||
					string(vd.NewState.Rev) != string(e.ev.Rev) || vd.NewState.Data == nil {
					t.Errorf("accept verdict %s state %+v", vd, vd.NewState)
				}
			}
			if tc.check != nil {
				tc.check(t, e, vd)
			}
		})
	}
}

// wantTolerated checks a Lenient acceptance reports the tolerated reason.
func wantTolerated(r Reason) func(t *testing.T, e *caseEnv, vd Verdict) {
	return func(t *testing.T, e *caseEnv, vd Verdict) {
		if vd.Tolerated != r {
			t.Errorf("tolerated %s, want %s", vd.Tolerated, r)
		}
	}
}

// An empty commit (no ops) must keep the data root: no MST block is
// needed to check it.
func TestEmptyCommit(t *testing.T) {
	w := newWorld(t, atcrypto.P256, 12)
	ev := w.apply(nil)
	if vd := w.check(Config{}, ev); vd.Action != Accept {
		t.Fatalf("empty commit: %s", vd)
	}
	ev.Blocks = withoutBlock(t, ev, w.r.Data())
	if vd := w.check(Config{}, ev); vd.Action != Accept {
		t.Fatalf("empty commit without its root node: %s", vd)
	}
	ev.PrevData = nodeCID("else")
	if vd := w.check(Config{}, ev); vd.Action != Drop || vd.Reason != ReasonInversionMismatch {
		t.Fatalf("empty commit with another prevData: %s", vd)
	}
}
