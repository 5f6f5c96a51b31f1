package relay

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/atrelay/relay/engine/car"
	"github.com/atrelay/relay/engine/cid"
	"github.com/atrelay/relay/engine/event"
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

// resyncTracker remembers, per desynchronized DID, since when it is
// desynchronized, how many resyncs failed, and its pending retry timer.
// Every field is guarded by mu.
type resyncTracker struct {
	mu       sync.Mutex
	since    map[string]time.Time
	attempts map[string]int
	timers   map[string]*time.Timer
	closed   bool
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

// markDesync starts the desynchronized clock of did (kept if running).
func (r *Relay) markDesync(did string) {
	t := &r.rs
	t.mu.Lock()
	if _, ok := t.since[did]; !ok {
		t.since[did] = r.now()
	}
	t.mu.Unlock()
}

// resynced stops did's desynchronized clock and observes the time spent.
func (r *Relay) resynced(did string) {
	t := &r.rs
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
		r.m.desyncSeconds.Update(r.now().Sub(since).Seconds())
	}
	r.m.reactivated.Inc()
}

// requestResync asks the resyncer to repair did; a refusal is counted and
// retried after the base backoff.
func (r *Relay) requestResync(did, host string) {
	r.markDesync(did)
	if r.resync == nil {
		return
	}
	r.m.resyncEnqueued.Inc()
	if !r.resync.Enqueue(did, host) {
		r.m.resyncRefused.Inc()
		r.scheduleResync(did, host, r.cfg.ResyncRetryBackoff)
	}
}

// scheduleResync arms one retry timer for did (none if one is armed or
// the relay is closing). A timer costs no goroutine until it fires.
func (r *Relay) scheduleResync(did, host string, after time.Duration) {
	t := &r.rs
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
			r.requestResync(did, host)
		}
	})
}

// stopResyncTimers cancels every pending retry (Close).
func (r *Relay) stopResyncTimers() {
	t := &r.rs
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
	if res.Outcome == resync.OK {
		st := res.State
		d := &resyncDone{
			rev:    append([]byte(nil), st.Rev...),
			commit: append([]byte(nil), st.Commit...),
			data:   append([]byte(nil), st.Data...),
			block:  append([]byte(nil), st.CommitBlock...),
		}
		c := &control{did: did, kind: ctlResyncDone, done: make(chan error, 1), resync: d}
		if err := r.submitControl(r.ctx, c); err != nil {
			return // closing: the mark is persisted, start-up enqueues it again
		}
		return
	}
	r.log.Warn("resync failed", "did", did, "outcome", res.Outcome.String(), "err", res.Err)
	if !retryable(res.Outcome) {
		return
	}
	t := &r.rs
	t.mu.Lock()
	t.attempts[did]++
	n := t.attempts[did]
	t.mu.Unlock()
	if n >= r.cfg.ResyncMaxAttempts {
		r.m.resyncGaveUp.Inc()
		r.log.Warn("giving up resync until restart or next chain break", "did", did, "attempts", n)
		t.mu.Lock()
		delete(t.attempts, did)
		t.mu.Unlock()
		return
	}
	back := r.cfg.ResyncRetryBackoff << min(n-1, 20)
	if back > r.cfg.ResyncMaxBackoff || back <= 0 {
		back = r.cfg.ResyncMaxBackoff
	}
	r.scheduleResync(did, res.Host, back)
}

// applyResync runs on did's worker: emit the relay's #sync for a verified
// head at or above the account's rev and re-activate the account; if the
// account already moved past the fetched head (commits kept flowing), only
// clear the mark.
func (r *Relay) applyResync(s *scratch, t task, a *acctState) {
	d := t.ctl.resync
	if a.local != store.LocalDesynchronized {
		return // cleared meanwhile (an upstream #sync), or restricted
	}
	res := result{worker: s.id, start: t.start, kind: event.KindSync}
	if len(a.rev) > 0 && bytes.Compare(d.rev, a.rev) < 0 {
		a.local = store.LocalActive
		res.did, res.localAfter = a.did, store.LocalActive
		a.ticket = s.ticket + 1
		r.send(s, res)
		r.resynced(a.did)
		return
	}
	blocks := car.AppendHeader(nil, cid.CID(d.commit))
	blocks = car.AppendBlock(blocks, cid.CID(d.commit), d.block)
	tm := []byte(r.now().UTC().Format("2006-01-02T15:04:05.000Z"))
	sy := event.Sync{Seq: 1, DID: []byte(a.did), Rev: d.rev, Blocks: blocks, Time: tm}
	out := r.bufs.Get(len(blocks) + len(a.did) + 256)
	out.B = event.AppendSync(out.B[:0], &sy)
	res.frameLen = len(out.B)
	b := out.B
	didAt := len(b)
	b = append(b, a.did...)
	revAt := len(b)
	b = append(b, d.rev...)
	cAt := len(b)
	b = append(b, d.commit...)
	dAt := len(b)
	b = append(b, d.data...)
	out.B = b
	res.out = out
	res.ev = store.Event{Kind: store.KindSync, DID: b[didAt:revAt], Host: a.host, Local: store.LocalActive,
		Rev: b[revAt:cAt], Commit: b[cAt:dAt], Data: b[dAt:]}
	a.rev = append(a.rev[:0], d.rev...)
	a.commit = append(a.commit[:0], d.commit...)
	a.data = append(a.data[:0], d.data...)
	a.local = store.LocalActive
	a.ticket = s.ticket + 1
	r.send(s, res)
	r.resynced(a.did)
}

// recoverAccounts runs once at start-up over the account table: accounts
// still desynchronized are enqueued again, and host-throttled accounts of
// hosts with room under their limit are let in (a limit raised before a
// crash finished its work).
func (r *Relay) recoverAccounts(ctx context.Context) {
	type pending struct {
		did  string
		host store.HostID
	}
	var desync, throttled []pending
	err := r.st.ScanAccounts(func(a *store.Account) bool {
		switch a.LocalStatus {
		case store.LocalDesynchronized:
			desync = append(desync, pending{string(a.DID), a.Host})
		case store.LocalHostThrottled:
			throttled = append(throttled, pending{string(a.DID), a.Host})
		}
		return ctx.Err() == nil
	})
	if err != nil {
		r.log.Warn("start-up account scan failed", "err", err)
		return
	}
	for _, p := range desync {
		name := ""
		if h, ok := r.st.GetHost(p.host); ok {
			name = h.Hostname
		}
		r.requestResync(p.did, name)
	}
	for _, p := range throttled {
		if ctx.Err() != nil {
			return
		}
		hs := r.hostFor(p.host)
		if hs == nil || hs.accounts.Load() >= int64(hs.accountLimit.Load()) {
			continue
		}
		_ = r.submitControl(ctx, &control{did: p.did, kind: ctlUnthrottle, done: make(chan error, 1)})
	}
	if len(desync)+len(throttled) > 0 {
		r.log.Info("start-up account recovery", "desynchronized", len(desync), "host_throttled", len(throttled))
	}
}
