package relay

import (
	"testing"
	"time"

	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/store"
)

// TestUnparkSkipsTheQueue parks one account (its DID document held back)
// with room for no other, so every other new account's frame makes the
// only worker wait for its own resolution, served one at a time. Once the
// document comes, the parked account's frames must run at the worker's
// next task, not behind every frame queued meanwhile: queued behind them,
// each answer waited for the whole queue, the side queue stayed full and a
// relay seeing many new accounts resolved one at a time (issue 16's
// 1 M-account run: 10 events/s). So when the parked account's event is
// stored, most of what was queued at the release must still be queued.
//
// The scenario is made deterministic, since the bound is on an order: one
// host whose first account is the held one, so the held account's frames
// are the worker's first tasks (it takes the one parking slot) and its
// host's head (its event is stored as soon as it runs, not after earlier
// frames of its host); and one PLC request at a time, so the held request
// stops every other resolution until the release and the worker's current
// task then waits for exactly one document. With two hosts and 128
// requests at once, which account parked, which frames its event waited
// for and how long the worker's task waited all depended on the race
// (CI once saw 43 of 235 tasks left).
func TestUnparkSkipsTheQueue(t *testing.T) {
	fl := newFleet(t, 1, 60)
	slowHost := fl.Hosts()[0]
	slowDID := slowHost.Accounts()[0]

	// Every other document: one at a time, 50 ms each.
	plcURL, release := holdIdentityPaced(t, fl, slowDID, 50*time.Millisecond)

	cfg := testConfig()
	cfg.Workers = 1
	cfg.ParkedAccounts = 1 // the slow account fills the side queue
	h := startPLCRelay(t, fl, cfg, identity.Config{PLCURL: plcURL, PLCMaxInFlight: 1, PLCRequestTimeout: time.Hour, PLCHedgeAfter: -1})
	defer h.stop()
	defer release()
	c := dialConsumer(t, h.addr, 0)

	// Every frame delivered, the slow account parked.
	total := uint64(slowHost.Seq() - 1)
	waitUntil(t, "every frame delivered with the slow account parked", func() bool {
		return h.r.m.framesIn.Get() >= total && h.r.work.parkedFrames.Load() > 0
	})
	queued, _ := h.r.workers.Queued(0)
	if queued < 40 {
		t.Fatalf("only %d tasks queued at the release: the test does not exercise the queue", queued)
	}
	release()
	var a store.Account
	waitUntil(t, "the parked account's event stored", func() bool {
		ok, err := h.st.GetAccount([]byte(slowDID), &a)
		return ok && err == nil
	})
	// Each queued new account waits 50 ms for its document (the queue
	// drains in about 3 s); the parked account's answer takes one task's
	// turn (seen: 224 to 235 of 235 left; 200 on a loaded machine, whose
	// commit lagged). Queued behind them, it ran with none left.
	if left, _ := h.r.workers.Queued(0); left < queued/4 {
		t.Errorf("the parked account ran with %d of the %d tasks queued at its release left: its answer waited behind the queue",
			left, queued)
	}
	h.waitHostsCaughtUp(fl.Hosts())
	h.noLosses(t)
	checkStream(t, h, c.waitFrames(t, int(h.st.NewestSeq())), 1)
}
