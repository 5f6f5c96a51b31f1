package relay

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
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
	return newFleetOf(t, fleet.Workload{Hosts: n, AccountsPerHost: k, Seed: 7, DeleteAccountShare: 1e-9})
}

// newFleetOf is newFleet with workload w.
func newFleetOf(t *testing.T, w fleet.Workload) *fleet.Fleet {
	t.Helper()
	fl, err := fleet.New(fleet.Options{FirstSeq: 2, Workload: w})
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
	h := startRelayOn(t, st, identity.Config{PLCURL: fl.PLCURL(), AllowInsecureHosts: true}, fl.Hostnames(), testConfig(), 256<<10)
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
	case <-c.Done():
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

// waitHostsCaughtUp is waitFleetCaughtUp for some of the fleet's hosts.
func (h *harness) waitHostsCaughtUp(hosts []*fleet.Host) {
	h.t.Helper()
	for _, fh := range hosts {
		want := fh.Seq()
		waitUntil(h.t, fh.Name+" caught up", func() bool {
			sh, ok := h.st.HostByName(fh.Name)
			return ok && int64(sh.Cursor) >= want
		})
	}
}

// wantAtHead fails t unless the relay stores did (named what in the
// messages) at the head rev its fleet host fh reports.
func (h *harness) wantAtHead(t *testing.T, what string, fh *fleet.Host, did string) {
	t.Helper()
	var a store.Account
	if ok, err := h.st.GetAccount([]byte(did), &a); !ok || err != nil {
		t.Fatalf("%s: %v %v", what, ok, err)
	}
	resp, err := http.Get(fh.URL() + "/xrpc/com.atproto.sync.getLatestCommit?did=" + did)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var head struct{ Rev string }
	if err := json.NewDecoder(resp.Body).Decode(&head); err != nil || head.Rev == "" {
		t.Fatalf("getLatestCommit %s: %v %+v", did, err, head)
	}
	if string(a.Rev) != head.Rev {
		t.Errorf("%s at rev %s, want its host's head %s", what, a.Rev, head.Rev)
	}
}

// TestFramePanicQuarantinesHost makes every frame of one account panic,
// once in a worker and once in the upstream reader's Sink, through real
// fleet hosts on loopback (testPanicHook). The relay must survive, count
// the panic once, quarantine the account's host (persisted as throttled,
// refused by a public requestCrawl, not dialed again after a restart on
// the same store) while the other hosts' events keep flowing, and an
// operator's requestCrawl must resume the host from below the poisoned
// frame so that, the fault fixed, nothing is lost. Before, the panic killed
// the process (here: the test binary).
func TestFramePanicQuarantinesHost(t *testing.T) {
	for _, stage := range []int{stageWorker, stageSink} {
		t.Run(stageLabels[stage], func(t *testing.T) { testFramePanic(t, stage) })
	}
}

func testFramePanic(t *testing.T, stage int) {
	fl := newFleet(t, 3, 3)
	victim, others := fl.Hosts()[0], fl.Hosts()[1:]
	poisoned := victim.Accounts()[0]
	var armed atomic.Bool
	armed.Store(true)
	testPanicHook = func(at string, did []byte) {
		if armed.Load() && at == stageLabels[stage] && string(did) == poisoned {
			panic("test: poisoned frame of " + poisoned)
		}
	}
	defer func() { testPanicHook = nil }()

	dir := t.TempDir()
	cfg := testConfig()
	h := startRelayPLC(t, fl.PLCURL(), fl.Hostnames(), dir, cfg, store.NoSync, 256<<10, func(st *store.Store) {
		seedHosts(t, st, fl.Hostnames(), cfg.DefaultAccountLimit)
	})
	quarantined := func(h *harness) bool {
		sh, ok := h.st.HostByName(victim.Name)
		return ok && sh.Status == hostQuarantined
	}
	waitUntil(t, "the victim's quarantine", func() bool { return quarantined(h) })
	step(t, fl, 100)
	h.waitHostsCaughtUp(others)
	if got := h.r.m.framePanics[stage].Get(); got != 1 {
		t.Errorf("panics counted %d, want 1", got)
	}
	live := h.r.hosts.named(victim.Name) != nil
	if live {
		t.Error("quarantined host still subscribed")
	}
	err := h.r.RequestCrawl(context.Background(), victim.Name)
	if !errors.Is(err, ErrHostHeld) || !errors.Is(err, ErrHostBanned) {
		t.Errorf("public requestCrawl of a quarantined host: %v", err)
	}
	if sh, _ := h.st.HostByName(victim.Name); int64(sh.Cursor) >= victim.Seq() {
		t.Errorf("victim's cursor %d passed the poisoned frame (host at %d)", sh.Cursor, victim.Seq())
	}
	h.stop()

	// Restart on the same store with the fault still armed: the victim is
	// not dialed (no crash loop), the others are.
	conns := victim.Stats().Connections
	h = startRelayPLC(t, fl.PLCURL(), fl.Hostnames(), dir, cfg, store.NoSync, 256<<10, nil)
	step(t, fl, 100)
	h.waitHostsCaughtUp(others)
	if !quarantined(h) {
		t.Error("quarantine lost across a restart")
	}
	if n := victim.Stats().Connections; n != conns {
		t.Errorf("quarantined host dialed again after the restart (%d connections, was %d)", n, conns)
	}
	if n := h.r.m.framePanics[stage].Get(); n != 0 {
		t.Errorf("%d panics after the restart", n)
	}

	// The fault fixed, an operator resumes the host: it replays from below
	// the poisoned frame and the account ends at its host's head.
	armed.Store(false)
	if err := h.r.AdminRequestCrawl(context.Background(), victim.Name); err != nil {
		t.Fatal(err)
	}
	h.waitHostsCaughtUp([]*fleet.Host{victim})
	h.wantAtHead(t, "poisoned account after the resume", victim, poisoned)
	if sh, _ := h.st.HostByName(victim.Name); sh.Status != store.HostActive {
		t.Errorf("resumed host status %v", sh.Status)
	}
	h.stop()
}

// TestSlowIdentityParksOnlyItsAccount runs the relay with one worker
// against two fleet hosts, with the directory holding back one account's
// DID document until the test releases it. The worker must park that
// account's frames and keep serving the other host's accounts (before, it
// waited for the document with every account it serves behind), then run
// the parked frames in order once the document comes: the stream checks
// out and the account ends at its host's head. Meanwhile the slow host,
// whose later results wait for the parked frame (OrderHost), is paused
// (HostHeldBytes) and resumed once they are released.
func TestSlowIdentityParksOnlyItsAccount(t *testing.T) {
	fl := newFleet(t, 2, 3)
	slowHost, fast := fl.Hosts()[0], fl.Hosts()[1]
	slowDID := slowHost.Accounts()[0]
	plcURL, release := holdIdentity(t, fl, slowDID)

	cfg := testConfig()
	cfg.Order = OrderHost
	cfg.Workers = 1
	// The slow host's other accounts' results wait for the parked frame
	// (host order): any of them pauses the host until it is released.
	cfg.HostHeldBytes = 1
	// A resolution timeout far beyond the test's deadlines: a worker that
	// waits for the held document would hold the fast host until then.
	h := startPLCRelay(t, fl, cfg, identity.Config{PLCURL: plcURL, PLCRequestTimeout: time.Hour})
	defer h.stop()
	defer release() // before stop: Close processes parked frames, waiting
	c := dialConsumer(t, h.addr, 0)

	h.waitHostsCaughtUp([]*fleet.Host{fast})
	step(t, fl, 200)
	h.waitHostsCaughtUp([]*fleet.Host{fast})
	if n := h.r.m.parked.Get(); n == 0 {
		t.Error("no frame parked")
	}
	if sh, _ := h.st.HostByName(slowHost.Name); int64(sh.Cursor) >= slowHost.Seq() {
		t.Fatalf("slow host caught up (cursor %d) while its account's document was held", sh.Cursor)
	}
	waitUntil(t, "the slow host's pause for its held results", func() bool { return h.r.m.hostPauses[pauseHeld].Get() > 0 })

	release()
	h.waitHostsCaughtUp(fl.Hosts())
	if h.r.work.parkedFrames.Load() != 0 {
		t.Errorf("%d frames still parked", h.r.work.parkedFrames.Load())
	}
	h.noLosses(t)
	h.wantAtHead(t, "slow account", slowHost, slowDID)
	checkStream(t, h, c.waitFrames(t, int(h.st.NewestSeq())), 1)
}

// TestCommitsPassParkedFrame holds back the DID document of one account,
// created last on its host, with the default OrderAccount: the other
// accounts' commits after its creation must not wait for it. They are
// published and durable while the slow account's first frame is parked,
// yet the host's persisted cursor stays below that frame, so a crash would
// have the host send it again (the commits that passed it then come back
// as stale duplicates and are dropped: TestKill9). Once the document
// comes, the slow account's frames follow in order and nothing is lost.
func TestCommitsPassParkedFrame(t *testing.T) {
	// Commits only: an #identity, #account or #sync does not pass, and
	// holds its account's later commits behind it.
	fl := newFleetOf(t, fleet.Workload{Hosts: 1, AccountsPerHost: 4, Seed: 7,
		IdentityShare: 1e-9, DeactivateShare: 1e-9, DeleteAccountShare: 1e-9, SyncShare: 1e-9})
	host := fl.Hosts()[0]
	slowDID := host.Accounts()[3]
	plcURL, release := holdIdentity(t, fl, slowDID)

	cfg := testConfig()
	cfg.Workers = 2
	h := startPLCRelay(t, fl, cfg, identity.Config{PLCURL: plcURL, PLCRequestTimeout: time.Hour})
	defer h.stop()
	defer release() // before stop: Close processes parked frames, waiting
	c := dialConsumer(t, h.addr, 0)

	step(t, fl, 100)
	// passed counts results when they are released, before their group
	// commit: wait for 20 events stored beyond the other three accounts'
	// creations (4 frames each) as well.
	waitUntil(t, "commits past the parked frame published", func() bool {
		return h.r.m.framesIn.Get() >= uint64(host.Seq()-2) && h.r.m.passed.Get() >= 20 &&
			h.r.work.parkedFrames.Load() > 0 && h.st.NewestSeq() >= 3*4+20
	})
	time.Sleep(2 * cfg.CursorFlushInterval)
	sh, _ := h.st.HostByName(host.Name)
	published := int64(h.st.NewestSeq())
	// Upstream seqs start at 2 and each frame is one event at most: with
	// the cursor below the parked frame, what is durable above it passed.
	if int64(sh.Cursor)-1 >= published || int64(sh.Cursor) >= host.Seq()-1 {
		t.Fatalf("host cursor %d with %d events published (host at seq %d): it passed the parked frame",
			sh.Cursor, published, host.Seq()-1)
	}
	if ok, _ := h.st.GetAccount([]byte(slowDID), new(store.Account)); ok {
		t.Fatal("the slow account was stored while its document was held")
	}

	release()
	h.waitHostsCaughtUp(fl.Hosts())
	h.noLosses(t)
	h.wantAtHead(t, "slow account", host, slowDID)
	checkStream(t, h, c.waitFrames(t, int(h.st.NewestSeq())), 1)
}

// TestHeldResultsDoNotStopWorkers holds back one account's DID document
// with a results budget of a few frames and no per-host held limit to
// speak of: the slow host's later results, held for host order behind the
// parked frame, soon exceed the whole results budget. They used to keep
// their place in it, so the only worker waited in send for room that only
// the parked frame (behind that worker) could make: ingestion stopped for
// every host, for good (a full-speed replay at a 128 MiB budget stalled
// after 879 events). Now held results leave the results budget and count
// under MaxHeldBytes, beyond which their host is paused: the other host
// keeps flowing, the held bytes stay bounded, and everything arrives once
// the document comes.
func TestHeldResultsDoNotStopWorkers(t *testing.T) {
	fl := newFleet(t, 2, 3)
	slowHost, fast := fl.Hosts()[0], fl.Hosts()[1]
	slowDID := slowHost.Accounts()[0]
	plcURL, release := holdIdentity(t, fl, slowDID)

	cfg := testConfig()
	cfg.Order = OrderHost // OrderAccount lets most of them pass (TestCommitsPassParkedFrame)
	cfg.Workers = 1
	cfg.ResultsQueueBytes = 8 << 10
	cfg.HostHeldBytes = 1 << 30 // only the global held limit pauses
	h := startPLCRelay(t, fl, cfg, identity.Config{PLCURL: plcURL, PLCRequestTimeout: time.Hour})
	defer h.stop()
	defer release()
	c := dialConsumer(t, h.addr, 0)

	h.waitHostsCaughtUp([]*fleet.Host{fast})
	// The events arrive in rounds, as a live host sends them: the slow
	// host is paused while its later rounds are still unsent, so what it
	// holds depends on the bound, not on how many frames one burst queued
	// before the pause took effect.
	for range 10 {
		step(t, fl, 30)
		// The old code stops here: the worker waits in send, the fast
		// host's frames sit in its queue.
		h.waitHostsCaughtUp([]*fleet.Host{fast})
	}
	if h.r.m.parked.Get() == 0 {
		t.Fatal("no frame parked: the test does not exercise holding")
	}
	waitUntil(t, "the slow host's pause for its held results", func() bool { return h.r.m.hostPauses[pauseHeld].Get() > 0 })
	// Bounded: MaxHeldBytes plus the results of the frames the slow host
	// had queued when it was paused (at most a round's, ~15 frames); far
	// below what its ~150 frames would hold unpaused.
	held := h.r.seq.heldNow.Load()
	t.Logf("%d bytes held behind the parked frame", held)
	if held > 128<<10 {
		t.Errorf("%d bytes held behind the parked frame", held)
	}

	release()
	h.waitHostsCaughtUp(fl.Hosts())
	if held := h.r.seq.heldNow.Load(); held != 0 {
		t.Errorf("%d bytes still held after the release", held)
	}
	if n := h.r.seq.budget.inUse(); n != 0 {
		t.Errorf("results budget still holds %d bytes", n)
	}
	h.noLosses(t)
	checkStream(t, h, c.waitFrames(t, int(h.st.NewestSeq())), 1)
}

// holdIdentity puts a proxy in front of fl's fake PLC that holds back
// did's document until release is called (release runs again at cleanup,
// so no request is left waiting). It returns the proxy's URL.
func holdIdentity(t *testing.T, fl *fleet.Fleet, did string) (plcURL string, release func()) {
	t.Helper()
	return holdIdentityPaced(t, fl, did, 0)
}

// holdIdentityPaced is holdIdentity that also serves every other document
// one at a time, each after a wait of each (0: at once, concurrently).
func holdIdentityPaced(t *testing.T, fl *fleet.Fleet, did string, each time.Duration) (plcURL string, release func()) {
	t.Helper()
	target, err := url.Parse(fl.PLCURL())
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0) // requests the relay cancels at Close
	var one sync.Mutex
	plc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch {
		case strings.Contains(req.URL.Path, did):
			select {
			case <-gate:
			case <-req.Context().Done():
				return
			}
		case each > 0:
			one.Lock()
			defer one.Unlock()
			time.Sleep(each)
		}
		proxy.ServeHTTP(w, req)
	}))
	release = sync.OnceFunc(func() { close(gate) })
	t.Cleanup(plc.Close)
	t.Cleanup(release)
	return plc.URL, release
}
