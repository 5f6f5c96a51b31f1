package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"path/filepath"
	"testing"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/internal/dagcbortest"
	"github.com/atrelay/relay/internal/fixtures"
	"github.com/atrelay/relay/store"
)

// scenarioFile is one relay scenario of
// shared/fixtures/indigo/cmd/relay/testing/testdata (indigo @ 4b983a7);
// the format is described in shared/fixtures/README.md.
type scenarioFile struct {
	Lenient  bool `json:"lenient"`
	Accounts []struct {
		Identity struct {
			DID      string `json:"did"`
			Services map[string]struct {
				Type string `json:"type"`
				URL  string `json:"url"`
			} `json:"services"`
			Keys map[string]struct {
				Type               string `json:"type"`
				PublicKeyMultibase string `json:"publicKeyMultibase"`
			} `json:"keys"`
		} `json:"identity"`
		Status string `json:"status"`
	} `json:"accounts"`
	Messages []struct {
		Frame struct {
			Header json.RawMessage `json:"header"`
			Body   json.RawMessage `json:"body"`
		} `json:"frame"`
		Drop bool `json:"drop"`
	} `json:"messages"`
}

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(fixtures.Path("fixtures/indigo/cmd/relay/testing/testdata/*.json"))
	if err != nil || len(files) != 7 {
		t.Fatalf("scenario files: %v %v", files, err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			var sc scenarioFile
			if err := json.Unmarshal(fixtures.Read(t, path.Join("fixtures/indigo/cmd/relay/testing/testdata", name)), &sc); err != nil {
				t.Fatal(err)
			}
			mode := Strict
			if sc.Lenient {
				mode = Lenient
			}
			for i, out := range runScenario(t, &sc, mode) {
				msg := sc.Messages[i]
				if out.dropped != msg.Drop {
					t.Errorf("message %d: dropped=%v, fixture says drop=%v (%s)", i, out.dropped, msg.Drop, out.why)
				} else {
					t.Logf("message %d: dropped=%v as expected (%s)", i, out.dropped, out.why)
				}
			}
		})
	}
}

// The lenient files replayed strictly: their legacy commits (no prevData
// once the relay has state, deletes without prev) are dropped, so the
// file's flag is what lets them pass.
func TestScenarioLegacyFilesStrict(t *testing.T) {
	for _, name := range []string{"post_lifecycle_legacy.json", "deactivation.json"} {
		t.Run(name, func(t *testing.T) {
			var sc scenarioFile
			if err := json.Unmarshal(fixtures.Read(t, path.Join("fixtures/indigo/cmd/relay/testing/testdata", name)), &sc); err != nil {
				t.Fatal(err)
			}
			outs := runScenario(t, &sc, Strict)
			if outs[0].dropped {
				t.Errorf("first commit (no state, no prevData) dropped: %s", outs[0].why)
			}
			for i, out := range outs[1:] {
				if !out.commit {
					continue
				}
				// Deletes without prev fail their op shape (step 10) before
				// the prevData rule (step 11) is reached.
				ok := out.reason == ReasonMissingPrevData || out.reason == ReasonBadOp || out.reason == ReasonInactive
				if !out.dropped || !ok {
					t.Errorf("message %d accepted or wrong reason in strict mode: %s", i+1, out.why)
				}
			}
		})
	}
}

// outcome is what the harness did with one scenario message.
type outcome struct {
	dropped bool
	commit  bool   // a #commit judged by the Validator
	reason  Reason // the Validator's reason, for #commit and #sync
	why     string
}

// runScenario feeds the messages from one fake PDS host (the accounts'
// PDS) through a harness that plays the engine's part: seq ordering (spec
// §12.2 step 1), #account and #identity handling (§13.2, §13.3), state
// updates on accept. #commit and #sync go through the Validator.
func runScenario(t *testing.T, sc *scenarioFile, mode Mode) []outcome {
	v := New(Config{Mode: mode})
	ids := newFakeIDs()
	accts := accounts{}
	var host string
	for _, a := range sc.Accounts {
		pds := a.Identity.Services["atproto_pds"]
		h, ok := identity.NormalizePDSHost(pds.URL, true)
		if !ok {
			t.Fatalf("PDS URL %q", pds.URL)
		}
		k := a.Identity.Keys["atproto"]
		key, err := atcrypto.ParseMultibase(k.Type, k.PublicKeyMultibase)
		if err != nil {
			t.Fatal(err)
		}
		ids.docs[a.Identity.DID] = identity.Identity{DID: a.Identity.DID, Key: key, PDSHost: h}
		host = h
		accts[a.Identity.DID] = &AccountState{Known: true, Host: h, Local: store.LocalActive,
			Upstream: store.ParseAccountStatus(a.Status == "active", []byte(a.Status))}
	}
	var d event.Decoder
	var m event.Message
	lastSeq := int64(0)
	var outs []outcome
	ctx := context.Background()
	for i, msg := range sc.Messages {
		hdr, err := dagcbortest.FromJSON(msg.Frame.Header)
		if err != nil {
			t.Fatal(err)
		}
		body, err := dagcbortest.FromJSON(msg.Frame.Body)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Decode(append(hdr, body...), &m); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		seq, _ := m.Seq()
		var dropped, commit bool
		var why string
		var reason Reason
		switch {
		case seq <= lastSeq:
			// Step 1 is the engine's: a seq not above the previous one on
			// this connection is skipped.
			dropped, why = true, "seq not increasing (harness)"
		case m.Kind == event.KindCommit:
			vd := v.Commit(ctx, &m.Commit, host, accts.get(m.Commit.Repo), ids)
			commit, reason = true, vd.Reason
			dropped, why = vd.Action != Accept, vd.Reason.String()+" break="+vd.Break.String()+" tolerated="+vd.Tolerated.String()
			if vd.Err != nil {
				why += ": " + vd.Err.Error()
			}
			if !dropped {
				accts.accept(m.Commit.Repo, host, &vd)
			}
		case m.Kind == event.KindSync:
			vd := v.Sync(ctx, &m.Sync, host, accts.get(m.Sync.DID), ids)
			reason = vd.Reason
			dropped, why = vd.Action != Accept, vd.Reason.String()
			if !dropped {
				accts.accept(m.Sync.DID, host, &vd)
			}
		case m.Kind == event.KindAccount:
			// §13.3 in the harness: every account here lives on host.
			accts.applyAccount(&m.Account, host)
			why = "account (harness)"
		case m.Kind == event.KindIdentity:
			// §13.2 in the harness: purge and pass through.
			ids.Purge(string(m.Identity.DID))
			why = "identity (harness)"
		default:
			t.Fatalf("message %d: unexpected kind %s", i, m.Kind)
		}
		if !dropped {
			lastSeq = seq
		}
		outs = append(outs, outcome{dropped: dropped, commit: commit, reason: reason,
			why: fmt.Sprintf("%s seq %d: %s", m.Kind, seq, why)})
	}
	return outs
}
