package relay

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/atrelay/relay/bench/fleet"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/engine/verify"
	"github.com/atrelay/relay/store"
	"github.com/gobwas/ws"
)

// startFleetRelay starts a bench/fleet of n hosts with k accounts each and
// a relay subscribed to every host from its first event: the hosts are
// seeded in the store with cursor 1 and the fleet's seqs start at 2, so
// the relay's first dial replays each host's account creations.
func startFleetRelay(t *testing.T, n, k int, cfg Config) (*fleet.Fleet, *harness) {
	t.Helper()
	fl := newFleet(t, n, k)
	h := startRelayPLC(t, fl.PLCURL(), fl.Hostnames(), t.TempDir(), cfg, store.NoSync, 256<<10, func(st *store.Store) {
		seedHosts(t, st, fl.Hostnames(), cfg.DefaultAccountLimit)
	})
	return fl, h
}

// seedHosts creates each host active with cursor 1.
func seedHosts(t *testing.T, st *store.Store, names []string, limit uint64) {
	t.Helper()
	for _, name := range names {
		sh, err := st.CreateHost(store.NewHost{Hostname: name, Status: store.HostActive, AccountLimit: limit})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.UpdateHost(sh.ID, func(h *store.Host) { h.Cursor = 1 }); err != nil {
			t.Fatal(err)
		}
	}
}

// waitFleetCaughtUp waits until the relay completed every fleet host's
// newest seq durably (a deadline catches hangs; it is not a speed check).
func (h *harness) waitFleetCaughtUp(fl *fleet.Fleet) {
	h.t.Helper()
	deadline := time.Now().Add(hangTimeout)
	for _, fh := range fl.Hosts() {
		want := fh.Seq()
		for {
			// The persisted cursor, not the in-memory low-water mark: it
			// is written in the same batch as the host's events, so once
			// it reaches want every event up to want is in the log.
			if sh, ok := h.st.HostByName(fh.Name); ok && int64(sh.Cursor) >= want {
				break
			}
			if time.Now().After(deadline) {
				h.t.Fatalf("host %s did not catch up to seq %d", fh.Name, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// gatedConsumer is a consumer whose reader does not read until released:
// a stalled client whose socket buffers fill.
func gatedConsumer(t *testing.T, addr string, cursor int64, gate chan struct{}) *consumer {
	t.Helper()
	d := ws.Dialer{NetDial: func(ctx context.Context, network, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if tc, ok := c.(*net.TCPConn); ok {
			// Small, but not below the loopback MSS: a receive buffer
			// under one segment can stall the TCP window for minutes.
			_ = tc.SetReadBuffer(128 << 10)
		}
		return c, err
	}}
	return dialConsumerWith(t, d, addr, cursor, gate)
}

// TestFleetEndToEnd runs 50 fleet hosts through the relay with every fault
// kind injected and four kinds of consumers, and checks that every valid
// event reaches every consumer exactly once in order, each fault is
// rejected for its reason or handled as its doc says, and the chain break
// is repaired by a resync that emits the relay's own #sync.
func TestFleetEndToEnd(t *testing.T) {
	hosts, steps := 50, 1200
	if testing.Short() || raceEnabled {
		steps = 400
	}
	cfg := testConfig()
	fl, h := startFleetRelay(t, hosts, 3, cfg)
	defer h.stop()

	// The relay is already ingesting the hosts' account creations: cursor
	// 0 makes each consumer start at the first event.
	live := dialConsumer(t, h.addr, 0)
	gate := make(chan struct{})
	stalled := gatedConsumer(t, h.addr, 0, gate)
	resumer := dialConsumer(t, h.addr, 0)
	h.waitConnected()

	// Faults go to hosts 0..10, one kind each; the broken chain's account
	// is the first active one of its host.
	faultHost := map[fleet.FaultKind]*fleet.Host{}
	for i, k := range fleet.AllFaults() {
		faultHost[k] = fl.Hosts()[i]
	}
	brokenDIDs := map[string]bool{}
	for _, d := range faultHost[fleet.FaultBrokenChain].Accounts() {
		brokenDIDs[d] = true
	}
	var resumed *consumer
	var firstPart [][]byte
	for i := 0; i < steps; i++ {
		if _, err := fl.Step(); err != nil {
			t.Fatal(err)
		}
		if i == steps/4 {
			// A key rotation on a host without faults: #identity then a
			// #sync under the new key; every later commit verifies with
			// the new key only. The relay catches up first: a commit
			// signed with the old key that reaches the relay after the
			// directory changed can not verify (no key history in the
			// protocol), which is right but would make the count timing
			// dependent.
			h.waitFleetCaughtUp(fl)
			did := fl.Hosts()[len(fleet.AllFaults())].Accounts()[0]
			old, err := h.ids.Lookup(context.Background(), did)
			if err != nil {
				t.Fatal(err)
			}
			h.rotated = map[string]identity.Identity{did: old}
			if err := fl.RotateKey(did); err != nil {
				t.Fatal(err)
			}
		}
		if i == steps/3 {
			h.waitFleetCaughtUp(fl)
			for _, k := range fleet.AllFaults() {
				if k == fleet.FaultBrokenChain {
					continue // injected last, see below
				}
				if err := faultHost[k].Inject(k); err != nil {
					t.Fatalf("inject %s: %v", k, err)
				}
			}
		}
		if i == steps/2 {
			// Disconnect one consumer and resume it from its last seq.
			_ = resumer.Conn().Close()
			<-resumer.Done()
			firstPart = resumer.waitFrames(t, 0)
			var last int64
			if n := len(firstPart); n > 0 {
				var m event.Message
				var dec event.Decoder
				if err := dec.Decode(firstPart[n-1], &m); err != nil {
					t.Fatal(err)
				}
				last, _ = m.Seq()
			}
			resumed = dialConsumer(t, h.addr, last)
		}
	}
	// The broken chain goes last: its resync fetches the head the break
	// created, so no later commit of that account is superseded by the
	// relay's #sync and dropped as stale (which would be correct, but
	// would make the count below depend on timing).
	if err := faultHost[fleet.FaultBrokenChain].Inject(fleet.FaultBrokenChain); err != nil {
		t.Fatal(err)
	}
	h.waitFleetCaughtUp(fl)
	// The broken chain is repaired by a resync: wait for it.
	deadline := time.Now().Add(hangTimeout)
	for h.r.m.reactivated.Get() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no account was resynchronized (resync enqueued %d, refused %d)", h.r.m.resyncEnqueued.Get(), h.r.m.resyncRefused.Get())
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(gate)
	newest := int(h.st.NewestSeq())

	// Every published event of every host is in the log, minus the four
	// the faults publish to be rejected, plus the relay's own #sync.
	published := 0
	for _, fh := range fl.Hosts() {
		published += int(fh.Seq() - 1)
	}
	rejectedByFault := 4 // forged signature, foreign account, rev replay, rev rollback
	ownSyncs := int(h.r.m.reactivated.Get())
	// Commits the store's rev check refused (its second line of defence)
	// never reach consumers, so they are out of the count. This used to
	// happen in about one run in ten: a resync's #sync overtook commits of
	// the same account still held for their host's order, and the store
	// refused them as older; relay-generated results now queue behind
	// them. The count is logged so a recurrence is visible.
	superseded := int(h.r.m.dropped[DropStale].Get())
	if superseded > 0 {
		t.Logf("%d commits refused by the store's rev check", superseded)
	}
	if want := published - rejectedByFault + ownSyncs - superseded; newest != want {
		t.Logf("losses: %v", h.losses())
		t.Fatalf("logged %d events, want %d (published %d)", newest, want, published)
	}
	rejected := func(r verify.Reason) uint64 { return h.r.m.rejected[r.String()].Get() }
	if rejected(verify.ReasonBadSignature) != 1 || rejected(verify.ReasonWrongHost) != 1 || rejected(verify.ReasonStaleRev) != 2 {
		t.Errorf("rejections: signature %d, host %d, stale %d; want 1, 1, 2",
			rejected(verify.ReasonBadSignature), rejected(verify.ReasonWrongHost), rejected(verify.ReasonStaleRev))
	}
	if n := h.r.m.dropped[DropMalformed].Get(); n < 2 {
		t.Errorf("malformed drops %d, want ≥ 2 (malformed CBOR, truncated)", n)
	}
	if n := h.r.m.dropped[DropOutOfOrder].Get(); n < 1 {
		t.Errorf("out-of-order drops %d, want ≥ 1 (seq reset)", n)
	}
	if n := h.r.m.chainBreaks[verify.BreakSince.String()].Get() + h.r.m.chainBreaks[verify.BreakPrevData.String()].Get(); n != 1 {
		t.Errorf("chain breaks %d, want 1", n)
	}
	for _, fk := range []fleet.FaultKind{fleet.FaultOversize, fleet.FaultDisconnect} {
		if st := faultHost[fk].Stats(); st.Connections < 2 {
			t.Errorf("%s: host saw %d connections, want a reconnect", fk, st.Connections)
		}
	}
	var a store.Account
	for did := range brokenDIDs {
		if ok, err := h.st.GetAccount([]byte(did), &a); err != nil || !ok || a.LocalStatus != store.LocalActive {
			t.Errorf("%s after resync: found %v err %v local %v", did, ok, err, a.LocalStatus)
		}
	}

	allow := func(did string) bool { return brokenDIDs[did] }
	checkStreamBreaks(t, h, live.waitFrames(t, newest), 1, allow)
	checkStreamBreaks(t, h, stalled.waitFrames(t, newest), 1, allow)
	second := resumed.waitFrames(t, newest-len(firstPart))
	checkStreamBreaks(t, h, append(firstPart, second...), 1, allow)
	old := int64(newest / 3)
	late := dialConsumer(t, h.addr, old)
	checkStreamBreaks(t, h, late.waitFrames(t, newest-int(old)), old+1, allow)
}
