package relay

import (
	"bytes"
	"context"
	"github.com/atrelay/relay/engine/verify"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/resync"
	"github.com/atrelay/relay/store"
)

// Resync wiring (issue 6 "Resync", spec §13.4). An account is marked
// desynchronized by a chain break (persisted with the event that broke the
// chain, Event.Local), by an operator, or when it is let in after being
// host-throttled. The mark is cleared by an upstream #sync or by a
// successful resync, whose verified head the DID's worker turns into the
// relay's own #sync (CAR with only the signed commit block, as a PDS sends
// it), logged and published like any event, with the account re-activated
// in the same batch. A refused Enqueue (queue full) or a failed resync is
// retried with bounded exponential backoff; accounts still desynchronized
// at start-up are enqueued again.

// resyncs is the resync stage: it remembers, per desynchronized DID,
// since when it is desynchronized, how many resyncs failed and its pending
// retry timer, and hands DIDs to the Resyncer. Safe for concurrent use:
// workers mark and clear accounts, the resyncer reports failures, retry
// timers fire on their own goroutines.
type resyncs struct {
	// Static after newResyncs.
	resyncer Resyncer // nil: accounts stay desynchronized, counted
	cfg      *Config  // the relay's, read-only (backoff, attempts)
	now      func() time.Time
	m        *metricsSet
	log      *slog.Logger

	mu       sync.Mutex
	since    map[string]time.Time   // guarded by mu
	attempts map[string]int         // guarded by mu
	timers   map[string]*time.Timer // guarded by mu
	closed   bool                   // guarded by mu
}

func newResyncs(cfg *Config, d Deps, m *metricsSet) *resyncs {
	return &resyncs{
		resyncer: d.Resyncer, cfg: cfg, now: d.Now, m: m, log: d.Logger,
		since:    make(map[string]time.Time),
		attempts: make(map[string]int),
		timers:   make(map[string]*time.Timer),
	}
}

// desynchronized returns how many accounts are desynchronized now.
func (t *resyncs) desynchronized() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.since)
}

// resyncDone is the verified head a resync delivered, copied out of the
// resyncer's buffer, applied on the DID's worker.
type resyncDone struct {
	rev, commit, data, block []byte
}

// retryable reports whether a failed resync is worth repeating. The
// account states a PDS reports (not found, deactivated, taken down,
// suspended) are answers, not failures: the host's next #account or #sync
// settles the account.
func retryable(o resync.Outcome) bool {
	switch o {
	case resync.NotFound, resync.Deactivated, resync.Takendown, resync.Suspended:
		return false
	}
	return true
}

// mark starts the desynchronized clock of did (kept if running).
func (t *resyncs) mark(did string) {
	t.mu.Lock()
	if _, ok := t.since[did]; !ok {
		t.since[did] = t.now()
	}
	t.mu.Unlock()
}

// resynced stops did's desynchronized clock and observes the time spent.
func (t *resyncs) resynced(did string) {
	t.mu.Lock()
	since, ok := t.since[did]
	delete(t.since, did)
	delete(t.attempts, did)
	if tm := t.timers[did]; tm != nil {
		tm.Stop()
		delete(t.timers, did)
	}
	t.mu.Unlock()
	if ok {
		t.m.desyncSeconds.Update(t.now().Sub(since).Seconds())
	}
	t.m.reactivated.Inc()
}

// request asks the resyncer to repair did; a refusal is counted and
// retried after the base backoff.
func (t *resyncs) request(did, host string) {
	// did may view a worker's overlay entry (acctState.did), which the
	// tables and the resyncer's queue would keep alive: keep a copy.
	did = strings.Clone(did)
	t.mark(did)
	if t.resyncer == nil {
		return
	}
	t.m.resyncEnqueued.Inc()
	if !t.resyncer.Enqueue(did, host) {
		t.m.resyncRefused.Inc()
		t.schedule(did, host, t.cfg.ResyncRetryBackoff)
	}
}

// schedule arms one retry timer for did (none if one is armed or
// the relay is closing). A timer costs no goroutine until it fires.
func (t *resyncs) schedule(did, host string, after time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.timers[did] != nil {
		return
	}
	t.timers[did] = time.AfterFunc(after, func() {
		t.mu.Lock()
		delete(t.timers, did)
		closed := t.closed
		t.mu.Unlock()
		if !closed {
			t.request(did, host)
		}
	})
}

// stop cancels every pending retry (Close).
func (t *resyncs) stop() {
	t.mu.Lock()
	t.closed = true
	for did, tm := range t.timers {
		tm.Stop()
		delete(t.timers, did)
	}
	t.mu.Unlock()
}

// OnResyncResult is the resync.Config.OnResult of the relay's resyncer:
// a verified head goes to the DID's worker (copied, since res's views die
// with the call); a failure keeps the account desynchronized and retries
// with backoff, at most ResyncMaxAttempts times.
func (r *Relay) OnResyncResult(did string, res resync.Result) {
	if res.Outcome != resync.OK {
		r.resyncs.failed(did, res)
		return
	}
	r.actions.resyncDone(r.ctx, did, res.State)
}

// resyncDone queues a verified head on did's worker (applyResync), copied
// since the resyncer's views die with its call. Runs on the resyncer's
// goroutine; it does not wait for the worker.
func (ac *accountActions) resyncDone(ctx context.Context, did string, st verify.RepoState) {
	d := &resyncDone{
		rev:    append([]byte(nil), st.Rev...),
		commit: append([]byte(nil), st.Commit...),
		data:   append([]byte(nil), st.Data...),
		block:  append([]byte(nil), st.CommitBlock...),
	}
	c := &control{did: did, kind: ctlResyncDone, done: make(chan error, 1), resync: d}
	// An error means closing: the mark is persisted, start-up enqueues the
	// account again.
	_ = ac.submit(ctx, c)
}

// failed handles a resync that did not deliver a head: the account stays
// desynchronized and, if worth it, is retried with backoff, at most
// ResyncMaxAttempts times in a row. Runs on the resyncer's goroutine.
func (t *resyncs) failed(did string, res resync.Result) {
	t.log.Warn("resync failed", "did", did, "outcome", res.Outcome.String(), "err", res.Err)
	if !retryable(res.Outcome) {
		return
	}
	t.mu.Lock()
	t.attempts[did]++
	n := t.attempts[did]
	t.mu.Unlock()
	if n >= t.cfg.ResyncMaxAttempts {
		t.m.resyncGaveUp.Inc()
		t.log.Warn("giving up resync until restart or next chain break", "did", did, "attempts", n)
		t.mu.Lock()
		delete(t.attempts, did)
		t.mu.Unlock()
		return
	}
	back := t.cfg.ResyncRetryBackoff << min(n-1, 20)
	if back > t.cfg.ResyncMaxBackoff || back <= 0 {
		back = t.cfg.ResyncMaxBackoff
	}
	t.schedule(did, res.Host, back)
}

// applyResync runs on did's worker: emit the relay's #sync for a verified
// head at or above the account's rev and re-activate the account; if the
// account already moved past the fetched head (commits kept flowing), only
// clear the mark.
func (w *accountWorkers) applyResync(s *scratch, t task, a *acctState) {
	d := t.ctl.resync
	if a.local != store.LocalDesynchronized {
		return // cleared meanwhile (an upstream #sync), or restricted
	}
	res := result{worker: s.id, start: t.start, kind: event.KindSync}
	if rev := a.rev(); len(rev) > 0 && bytes.Compare(d.rev, rev) < 0 {
		a.local = store.LocalActive
		res.did, res.localAfter = a.did(), store.LocalActive
		a.ticket = s.ticket + 1
		w.send(s, res)
		w.resyncs.resynced(a.did())
		return
	}
	blocks := car.AppendHeader(nil, cid.CID(d.commit))
	blocks = car.AppendBlock(blocks, cid.CID(d.commit), d.block)
	tm := []byte(w.now().UTC().Format("2006-01-02T15:04:05.000Z"))
	sy := event.Sync{Seq: 1, DID: []byte(a.did()), Rev: d.rev, Blocks: blocks, Time: tm}
	out := w.bufs.Get(len(blocks) + len(sy.DID) + 256)
	out.B = event.AppendSync(out.B[:0], &sy)
	res.frameLen = len(out.B)
	res.ev = store.Event{Kind: store.KindSync, Host: a.host, Local: store.LocalActive}
	appendEventState(out, &res.ev, a.did(), &verify.State{Rev: d.rev, Commit: d.commit, Data: d.data})
	res.out = out
	s.overlay.setState(a, d.rev, d.commit, d.data)
	a.local = store.LocalActive
	a.ticket = s.ticket + 1
	w.send(s, res)
	w.resyncs.resynced(a.did())
}

// recoverAccounts runs once at start-up over the account table: accounts
// still desynchronized are enqueued again, and host-throttled accounts of
// hosts with room under their limit are let in (a limit raised before a
// crash finished its work).
func (ac *accountActions) recoverAccounts(ctx context.Context) {
	type pending struct {
		did  string
		host store.HostID
	}
	var desync, throttled []pending
	err := ac.st.ScanAccounts(func(a *store.Account) bool {
		switch a.LocalStatus {
		case store.LocalDesynchronized:
			desync = append(desync, pending{string(a.DID), a.Host})
		case store.LocalHostThrottled:
			throttled = append(throttled, pending{string(a.DID), a.Host})
		}
		return ctx.Err() == nil
	})
	if err != nil {
		ac.log.Warn("start-up account scan failed", "err", err)
		return
	}
	for _, p := range desync {
		name := ""
		if h, ok := ac.st.GetHost(p.host); ok {
			name = h.Hostname
		}
		ac.resyncs.request(p.did, name)
	}
	for _, p := range throttled {
		if ctx.Err() != nil {
			return
		}
		hs := ac.hosts.lookup(p.host)
		if hs == nil || hs.accounts.Load() >= int64(hs.accountLimit.Load()) {
			continue
		}
		_ = ac.submit(ctx, &control{did: p.did, kind: ctlUnthrottle, done: make(chan error, 1)})
	}
	if len(desync)+len(throttled) > 0 {
		ac.log.Info("start-up account recovery", "desynchronized", len(desync), "host_throttled", len(throttled))
	}
}
