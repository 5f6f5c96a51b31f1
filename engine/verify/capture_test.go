package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/internal/fixtures"
)

// Capture: shared/captures/realpds-2 (two reference PDS 0.5.35 hosts,
// 15,443 #commit, 660 #sync). Every commit is valid and every chain
// unbroken (FORMAT.md), so strict validation must accept all of them.
func TestCaptureRealPDS(t *testing.T) {
	c := getCapture(t)
	clocks := map[string]func() time.Time{
		"fixed": func() time.Time { return captureNow },
		"real":  time.Now,
	}
	for name, now := range clocks {
		t.Run(name, func(t *testing.T) {
			replayCapture(t, c, now)
		})
	}
}

// replayCapture validates both hosts' frames in order, carrying account
// state forward, and compares the end state with final-state.json.
func replayCapture(t *testing.T, c *capture, now func() time.Time) {
	v := New(Config{Now: now})
	ids := c.idsFor()
	accts := accounts{}
	var d event.Decoder
	var m event.Message
	ctx := context.Background()
	var commits, syncs int
	for h, frames := range c.frames {
		host := captureHosts[h]
		for i, frame := range frames {
			if err := d.Decode(frame, &m); err != nil {
				t.Fatalf("host %d frame %d: %v", h, i, err)
			}
			switch m.Kind {
			case event.KindAccount:
				accts.applyAccount(&m.Account, host)
			case event.KindIdentity:
				ids.Purge(string(m.Identity.DID))
			case event.KindCommit:
				cm := &m.Commit
				vd := v.Commit(ctx, cm, host, accts.get(cm.Repo), ids)
				if vd.Action != Accept || vd.Break != BreakNone || vd.Tolerated != ReasonNone || vd.Migrated {
					t.Fatalf("host %d seq %d commit %s rev %s: %s %s (%v) break %s tolerated %s migrated %v",
						h, cm.Seq, cm.Repo, cm.Rev, vd.Action, vd.Reason, vd.Err, vd.Break, vd.Tolerated, vd.Migrated)
				}
				accts.accept(cm.Repo, host, &vd)
				commits++
			case event.KindSync:
				s := &m.Sync
				st := accts.get(s.DID)
				vd := v.Sync(ctx, s, host, st, ids)
				// Every #sync here repeats the current rev (FORMAT.md edge
				// case 5), and every one must be accepted.
				if vd.Action != Accept {
					t.Fatalf("host %d seq %d sync %s: %s %s (%v)", h, s.Seq, s.DID, vd.Action, vd.Reason, vd.Err)
				}
				if st.Known && !bytes.Equal(s.Rev, st.Rev) {
					t.Fatalf("host %d seq %d sync %s: rev %s differs from the current %s", h, s.Seq, s.DID, s.Rev, st.Rev)
				}
				accts.accept(s.DID, host, &vd)
				syncs++
			default:
				t.Fatalf("host %d frame %d: kind %s", h, i, m.Kind)
			}
		}
	}
	if commits != 15443 || syncs != 660 {
		t.Fatalf("validated %d commits, %d syncs", commits, syncs)
	}

	var final struct {
		Accounts map[string]struct {
			Hostname string `json:"hostname"`
			Rev      string `json:"rev"`
			CID      string `json:"cid"`
			Data     string `json:"data"`
		} `json:"accounts"`
	}
	if err := json.Unmarshal(fixtures.Read(t, "captures/realpds-2/final-state.json"), &final); err != nil {
		t.Fatal(err)
	}
	if len(final.Accounts) != len(accts) {
		t.Fatalf("%d accounts, final state has %d", len(accts), len(final.Accounts))
	}
	for did, want := range final.Accounts {
		st := accts[did]
		if st == nil || st.Host != want.Hostname || string(st.Rev) != want.Rev ||
			st.Commit.String() != want.CID || st.Data.String() != want.Data || !st.active() {
			t.Errorf("%s: state %+v, want %+v", did, st, want)
		}
	}
}
