package relay

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/atrelay/relay/bench/fleet"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/store"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/gobwas/ws"
)

// newFleet starts a bench/fleet of n hosts with k accounts each; the
// relay's hosts are seeded at cursor 1 and the fleet's seqs start at 2, so
// the first dial replays every account creation.
func newFleet(t *testing.T, n, k int) *fleet.Fleet {
	t.Helper()
	fl, err := fleet.New(fleet.Options{FirstSeq: 2, Workload: fleet.Workload{Hosts: n, AccountsPerHost: k, Seed: 7,
		DeleteAccountShare: 1e-9}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fl.Close() })
	return fl
}

// waitUntil polls cond until it holds, failing after hangTimeout (a hang,
// not a speed check).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStoreFailureStopsRelay makes the store's WAL writes fail under a
// running relay with a live consumer: ingestion stops, the consumer is
// disconnected, new consumers are refused, and Done closes with Err set to
// the store failure, so `relay serve` exits non-zero and systemd restarts
// it (before, Done never closed and the process stayed up, unhealthy).
func TestStoreFailureStopsRelay(t *testing.T) {
	fl := newFleet(t, 1, 3)
	toggle := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if (op.Kind == errorfs.OpFileWrite || op.Kind == errorfs.OpFileSyncData) && len(op.Path) > 4 && op.Path[len(op.Path)-4:] == ".log" {
			return errorfs.ErrInjected
		}
		return nil
	})}
	st, err := store.Open("db", store.Options{FS: errorfs.Wrap(vfs.NewMem(), toggle), Sync: store.SyncEveryBatch,
		BlockCacheBytes: 8 << 20, MemTableBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	seedHosts(t, st, fl.Hostnames(), 1000)
	h := startRelayOn(t, st, identity.Config{PLCURL: fl.PLCURL(), AllowInsecure: true}, fl.Hostnames(), testConfig(), 256<<10)
	defer func() {
		h.rs.Close()
		_ = h.r.Close()
		h.hub.Close()
		_ = h.srv.Close()
		h.ids.Close()
	}()
	c := dialConsumer(t, h.addr, 0)
	h.waitFleetCaughtUp(fl)
	if n := len(c.waitFrames(t, 1)); n == 0 {
		t.Fatal("no event before the failure")
	}

	toggle.On()
	waitUntil(t, "Done after the store failure", func() bool {
		if _, err := fl.Step(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-h.r.Done():
			return true
		default:
			return false
		}
	})
	if err := h.r.Err(); !errors.Is(err, ErrStoreFailed) {
		t.Fatalf("Err = %v, want ErrStoreFailed", err)
	}
	if h.r.Healthy() {
		t.Error("relay still healthy after a store failure")
	}
	if got := h.r.m.storeFailures.Get(); got != 1 {
		t.Errorf("store failures counted %d, want 1", got)
	}
	// Done closes after the hub: the consumer's connection is already
	// closed by the relay, and a new consumer is refused.
	select {
	case <-c.done:
	case <-time.After(hangTimeout):
		t.Fatal("consumer still connected after the store failure")
	}
	if conn, _, _, err := ws.Dial(context.Background(), "ws://"+h.addr+"/xrpc/com.atproto.sync.subscribeRepos"); err == nil {
		_ = conn.Close()
		t.Fatal("a new consumer was admitted after the store failure")
	}
	if err := h.r.Close(); !errors.Is(err, ErrStoreFailed) {
		t.Fatalf("Close = %v, want the store failure", err)
	}
}
