package relay

import (
	"bytes"
	"testing"
	"time"

	"github.com/atrelay/relay/bench/fleet"
	"github.com/atrelay/relay/bench/plc"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/store"
)

// Tests of a realistic PLC directory (issue 16, point 2): rate-limited,
// failing, down. Each runs a bench/fleet on loopback whose fake PLC
// (bench/plc) misbehaves, and a relay resolving against it.

// startPLCRelay starts a relay for fleet fl on a fresh store, its hosts
// seeded at cursor 1 (so the first dial replays every account creation),
// resolving identities with idc against fl's fake PLC, or against
// idc.PLCURL when set (a proxy in front of it).
func startPLCRelay(t *testing.T, fl *fleet.Fleet, cfg Config, idc identity.Config) *harness {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{Sync: store.NoSync, BlockCacheBytes: 8 << 20, MemTableBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	seedHosts(t, st, fl.Hostnames(), cfg.DefaultAccountLimit)
	if idc.PLCURL == "" {
		idc.PLCURL = fl.PLCURL()
	}
	idc.AllowInsecureHosts = true
	return startRelayOn(t, st, idc, fl.Hostnames(), cfg, 256<<10)
}

// setPLC gives fl's fake PLC behaviour b.
func setPLC(t *testing.T, fl *fleet.Fleet, b plc.Behaviour) {
	t.Helper()
	if err := fl.PLC().SetBehaviour(b); err != nil {
		t.Fatal(err)
	}
}

// step runs n planned fleet actions.
func step(t *testing.T, fl *fleet.Fleet, n int) {
	t.Helper()
	for range n {
		if _, err := fl.Step(); err != nil {
			t.Fatal(err)
		}
	}
}

// identityFrames counts the #identity events among frames.
func identityFrames(frames [][]byte) int {
	n := 0
	for _, f := range frames {
		if bytes.Contains(f[:min(len(f), 24)], []byte("#identity")) {
			n++
		}
	}
	return n
}

// TestPLCRateLimitNothingRejected: the fake PLC accepts 20 requests a
// second (a bucket of 5) and answers 429 with Retry-After: 1 beyond. The
// relay resolves every account's identity and every #identity event's
// fresh document anyway: every event is accepted, none rejected, and the
// directory sees few requests beyond one per resolution. Before, each 429
// was a failed resolution and its frames were rejected as
// identity_unavailable: lost for consumers.
func TestPLCRateLimitNothingRejected(t *testing.T) {
	fl := newFleet(t, 2, 10)
	setPLC(t, fl, plc.Behaviour{RatePerSecond: 20, Burst: 5})
	cfg := testConfig()
	h := startPLCRelay(t, fl, cfg, identity.Config{PLCMaxRate: 40})
	defer h.stop()
	c := dialConsumer(t, h.addr, 0)
	h.waitFleetCaughtUp(fl)
	step(t, fl, 100)
	h.waitFleetCaughtUp(fl)

	if l := h.losses(); len(l) != 0 {
		t.Errorf("events lost: %v", l)
	}
	frames := c.waitFrames(t, int(h.st.NewestSeq()))
	checkStream(t, h, frames, 1)
	accounts := len(fl.Hosts()) * 10
	resolutions := accounts + identityFrames(frames)
	pc := fl.PLC().Counters()
	t.Logf("PLC: %d requests (%d answered 429) for %d accounts and %d #identity events", pc.Requests, pc.RateLimited,
		accounts, resolutions-accounts)
	if pc.RateLimited == 0 {
		t.Fatal("the PLC never rate-limited the relay: the test tests nothing")
	}
	if pc.Requests > int64(2*resolutions) {
		t.Errorf("%d PLC requests for %d resolutions: the relay does not slow down", pc.Requests, resolutions)
	}
}

// TestPLCErrorsAndTimeoutsNothingRejected: the fake PLC answers 5 % of
// requests with 500 and never answers another 5 %. The resolver retries
// them (a shorter timeout first) and nothing is rejected. Before, each was
// a failed resolution cached for a minute, its frames rejected.
func TestPLCErrorsAndTimeoutsNothingRejected(t *testing.T) {
	fl := newFleet(t, 2, 10)
	setPLC(t, fl, plc.Behaviour{LatencyP50: 2 * time.Millisecond, LatencyP99: 20 * time.Millisecond,
		ErrorRate: 0.05, TimeoutRate: 0.05})
	h := startPLCRelay(t, fl, testConfig(), identity.Config{PLCRequestTimeout: 400 * time.Millisecond,
		PLCRetryBackoff: 10 * time.Millisecond})
	defer h.stop()
	c := dialConsumer(t, h.addr, 0)
	h.waitFleetCaughtUp(fl)
	step(t, fl, 200)
	h.waitFleetCaughtUp(fl)

	if l := h.losses(); len(l) != 0 {
		t.Errorf("events lost: %v", l)
	}
	checkStream(t, h, c.waitFrames(t, int(h.st.NewestSeq())), 1)
	pc := fl.PLC().Counters()
	t.Logf("PLC: %d requests, %d failed, %d never answered", pc.Requests, pc.Failures, pc.TimedOut)
	if pc.Failures+pc.TimedOut == 0 {
		t.Fatal("the PLC never failed: the test tests nothing")
	}
}

// TestUnknownDIDRejectedAtOnce: an account whose DID the directory does
// not know (404) is a definitive failure: its frames are rejected at once,
// without retries, as before, even with an hour-long retry window; the
// other accounts are untouched.
func TestUnknownDIDRejectedAtOnce(t *testing.T) {
	fl := newFleet(t, 2, 5)
	ghost := fl.Hosts()[0].Accounts()[0]
	if err := fl.PLC().Tombstone(ghost); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.IdentityRetryTimeout = time.Hour
	h := startPLCRelay(t, fl, cfg, identity.Config{})
	defer h.stop()
	h.waitFleetCaughtUp(fl)

	l := h.losses()
	if l["rejected identity_unavailable"] == 0 {
		t.Errorf("the unknown DID's frames were not rejected: %v", l)
	}
	if n := h.r.m.parkRetries.Get(); n != 0 {
		t.Errorf("%d retries for a DID that does not exist", n)
	}
	if n := h.ids.Metrics().GetOrCreateCounter("relay_identity_plc_retries_total").Get(); n != 0 {
		t.Errorf("%d PLC retries for a 404", n)
	}
	var a store.Account
	for _, fh := range fl.Hosts() {
		for _, did := range fh.Accounts() {
			ok, err := h.st.GetAccount([]byte(did), &a)
			if err != nil {
				t.Fatal(err)
			}
			if ok != (did != ghost) {
				t.Errorf("account %s stored: %v", did, ok)
			}
		}
	}
}

// TestPLCOutageRejectedAfterBound: the PLC fails every request for longer
// than IdentityRetryTimeout (2 s here). The relay holds the frames (parked,
// or waited for once the side queue is full: memory stays within
// ParkedBytes) and retries, then rejects them once their window has
// passed, not before; the hosts' cursors then move on. When the PLC is back
// new events flow again. Before, every frame was rejected at the first
// failure.
func TestPLCOutageRejectedAfterBound(t *testing.T) {
	const window = 2 * time.Second
	fl := newFleet(t, 2, 10)
	setPLC(t, fl, plc.Behaviour{ErrorRate: 1})
	cfg := testConfig()
	cfg.IdentityRetryTimeout = window
	cfg.ParkedAccounts = 4
	cfg.ParkedBytes = 16 << 10
	began := time.Now()
	h := startPLCRelay(t, fl, cfg, identity.Config{PLCRetries: 1, PLCRetryBackoff: 10 * time.Millisecond})
	defer h.stop()

	done := make(chan struct{})
	maxParked := make(chan int64, 1)
	go func() {
		var most int64
		for {
			most = max(most, h.r.work.parkedFrames.Load())
			select {
			case <-done:
				maxParked <- most
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	h.waitFleetCaughtUp(fl)
	close(done)
	if d := time.Since(began); d < window {
		t.Errorf("hosts caught up %v after the start: frames rejected before the %v window", d, window)
	}
	rejected := h.r.m.rejected["identity_unavailable"].Get()
	var accepted uint64
	for _, k := range acceptedKinds {
		accepted += h.r.m.accepted[k].Get()
	}
	if rejected == 0 || accepted != 0 {
		t.Fatalf("during the outage: %v", h.losses())
	}
	if h.r.m.parkRetries.Get() == 0 || h.r.m.parkExpired.Get() == 0 {
		t.Errorf("retries %d, expired windows %d", h.r.m.parkRetries.Get(), h.r.m.parkExpired.Get())
	}
	if most := <-maxParked; most*parkTaskBytes > cfg.ParkedBytes {
		t.Errorf("%d frames parked at once, beyond ParkedBytes", most)
	}
	if n := h.r.work.parkedFrames.Load(); n != 0 {
		t.Errorf("%d frames still parked", n)
	}

	t.Logf("outage over after %v", time.Since(began))
	// The PLC is back: new events are accepted, none rejected.
	setPLC(t, fl, plc.Behaviour{})
	commits := h.r.m.accepted[event.KindCommit].Get()
	step(t, fl, 50)
	h.waitFleetCaughtUp(fl)
	if h.r.m.rejected["identity_unavailable"].Get() != rejected {
		t.Errorf("rejections after the outage: %v", h.losses())
	}
	if h.r.m.accepted[event.KindCommit].Get() == commits {
		t.Error("no event accepted after the outage")
	}
}

// TestCloseDuringPLCOutage: with the PLC failing and an hour-long retry
// window, frames are held (parked, and waited for once the side queue is
// full); Close must not wait the window out.
func TestCloseDuringPLCOutage(t *testing.T) {
	fl := newFleet(t, 2, 10)
	setPLC(t, fl, plc.Behaviour{ErrorRate: 1})
	cfg := testConfig()
	cfg.IdentityRetryTimeout = time.Hour
	cfg.ParkedAccounts = 2
	h := startPLCRelay(t, fl, cfg, identity.Config{PLCRetries: 1, PLCRetryBackoff: 10 * time.Millisecond})
	waitUntil(t, "frames held for their identity", func() bool {
		return h.r.m.parkRetries.Get() > 0 && h.r.m.parkFull.Get() > 0
	})
	closed := make(chan struct{})
	go func() {
		h.stop()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("Close waits for the PLC outage to end")
	}
}
