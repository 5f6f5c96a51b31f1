package relay

import (
	"context"
	"testing"
	"time"

	"github.com/atrelay/relay/store"
)

// TestHostThrottledAccounts checks that accounts past a host's limit are
// recorded as host-throttled rows (no event), and that raising the limit
// lets them in, resyncs them and emits the relay's #sync for each, so
// none stays silently missing.
func TestHostThrottledAccounts(t *testing.T) {
	cfg := testConfig()
	cfg.DefaultAccountLimit = 1
	fl, h := startFleetRelay(t, 2, 3, cfg)
	defer h.stop()
	h.waitFleetCaughtUp(fl)
	throttled := func() map[string]bool {
		out := map[string]bool{}
		if err := h.st.ScanAccounts(func(a *store.Account) bool {
			if a.LocalStatus == store.LocalHostThrottled {
				out[string(a.DID)] = true
			}
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := throttled()
	if len(before) != 4 {
		t.Fatalf("%d host-throttled rows, want 4 (2 hosts × (3 accounts − limit 1))", len(before))
	}
	newest := h.st.NewestSeq()
	for _, name := range fl.Hostnames() {
		if err := h.r.SetHostLimits(context.Background(), name, 10, false); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(hangTimeout)
	for h.r.m.reactivated.Get() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 4 accounts resynchronized", h.r.m.reactivated.Get())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(throttled()); n != 0 {
		t.Fatalf("%d accounts still host-throttled", n)
	}
	var a store.Account
	for did := range before {
		if ok, err := h.st.GetAccount([]byte(did), &a); !ok || err != nil || a.LocalStatus != store.LocalActive || len(a.Rev) == 0 {
			t.Fatalf("%s: %v %v local %v rev %q", did, ok, err, a.LocalStatus, a.Rev)
		}
	}
	if got := h.st.NewestSeq() - newest; got != 4 {
		t.Fatalf("%d events after raising the limits, want the relay's 4 #sync", got)
	}
	for _, name := range fl.Hostnames() {
		if hh, _ := h.st.HostByName(name); hh.AccountCount != 3 {
			t.Fatalf("%s: account count %d, want 3", name, hh.AccountCount)
		}
	}
}
