package relay

import (
	"context"
	"errors"
	"fmt"
	"github.com/atrelay/relay/pool"
	"log/slog"
	"strings"
	"time"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/atproto/syntax"
	"github.com/atrelay/relay/engine/verify"
	"github.com/atrelay/relay/store"
)

// ErrBadDID is returned by account operations given a malformed DID.
var ErrBadDID = errors.New("relay: malformed DID")

// ErrUnknownAccount is returned by account operations on an account the
// relay has never seen.
var ErrUnknownAccount = errors.New("relay: unknown account")

// controlKind is an operator action on one account.
type controlKind uint8

const (
	ctlTakedown controlKind = iota + 1
	ctlSuspend
	ctlReverseTakedown
	ctlResync
	ctlResyncDone  // a resync delivered a verified head (control.resync)
	ctlUnthrottle  // let a host-throttled account in (its host's limit was raised)
	ctlUnpark      // did's identity resolved: run its parked tasks (park.go)
	ctlFlushParked // Close: run every parked task of the worker, waiting
	ctlWake        // nothing: wakes an idle worker to run its ready unparks (park.go)
)

// control is an account action run on the DID's worker, ordered with the
// account's events. done receives the outcome (buffered, one slot).
type control struct {
	did    string
	kind   controlKind
	done   chan error
	resync *resyncDone // ctlResyncDone only
	// ctlUnpark: the parking it ends and the transient failure its retry
	// window ended with (nil: resolved, or failed for good).
	parked *parkedAcct
	err    error
}

// localRestricts reports whether the relay itself withholds the account,
// and the status it reports for it then (spec §13.3, §13.4).
func localRestricts(l store.LocalStatus) (store.AccountStatus, bool) {
	switch l {
	case store.LocalTakendown, store.LocalSuspended, store.LocalHostThrottled:
		return l.Reported(), true
	}
	return store.StatusUnchanged, false
}

// accountView builds the relay's combined #account body (spec §13.3):
// active when the relay does not restrict the account and the host says
// active; status the local one if the relay restricts, else the host's.
func accountView(a *acctState, upstreamActive bool, upstreamStatusText []byte, did, tm []byte) event.Account {
	v := event.Account{DID: did, Time: tm}
	if s, ok := localRestricts(a.local); ok {
		v.Status = []byte(s.String())
		return v
	}
	v.Active = upstreamActive
	if !upstreamActive {
		v.Status = upstreamStatusText
	}
	return v
}

func (w *accountWorkers) processIdentity(s *scratch, hs *hostState, e *event.Identity, res *result) (DropReason, bool) {
	if syntax.CheckDID(e.DID) != nil || len(e.DID) > store.MaxDIDBytes {
		return DropBadDID, false
	}
	a, err := w.load(s, e.DID)
	if err != nil {
		w.fail(err)
		return DropShutdown, false
	}
	// §13.2: purge, re-resolve, keep the handle only if the host is the
	// account's PDS and the document declares that handle. The fresh
	// document was asked for when the event arrived (Refresh); a worker
	// that would wait for it parks the event instead. The refresh is
	// taken on the first run; one that parked finds its result cached.
	id, err := s.ids.reresolve(w.ctx, a.did(), identityTag(hs, e.Seq))
	if s.ids.parked {
		return mustPark, false
	}
	authoritative := err == nil && id.PDSHost == hs.name
	if !a.known && !authoritative {
		return DropNotAuthoritative, false
	}
	if authoritative && !w.admit(hs, a) {
		return DropHostThrottled, false
	}
	out := w.bufs.Get(len(e.DID) + len(e.Handle) + 128)
	ident := *e
	if ident.Handle != nil && (!authoritative || !strings.EqualFold(string(ident.Handle), id.Handle)) {
		ident.Handle = nil
	}
	out.B = event.AppendIdentity(out.B[:0], &ident)
	w.finish(s, hs, a, res, out, store.KindIdentity, verify.State{}, store.StatusUnchanged)
	if !authoritative {
		res.ev.Host = store.HostNone
	}
	return 0, true
}

func (w *accountWorkers) processAccount(s *scratch, hs *hostState, e *event.Account, res *result) (DropReason, bool) {
	if syntax.CheckDID(e.DID) != nil || len(e.DID) > store.MaxDIDBytes {
		return DropBadDID, false
	}
	a, err := w.load(s, e.DID)
	if err != nil {
		w.fail(err)
		return DropShutdown, false
	}
	if !w.authoritative(s, a.did(), hs) {
		if s.ids.parked {
			return mustPark, false
		}
		return DropNotAuthoritative, false
	}
	if !w.admit(hs, a) {
		return DropHostThrottled, false
	}
	st := store.ParseAccountStatus(e.Active, e.Status)
	a.upstream = st
	view := accountView(a, e.Active, e.Status, e.DID, e.Time)
	view.Seq = e.Seq
	out := w.bufs.Get(len(e.DID) + 160)
	out.B = event.AppendAccount(out.B[:0], &view)
	w.finish(s, hs, a, res, out, store.KindAccount, verify.State{}, st)
	return 0, true
}

// authoritative applies §8.3 with one re-resolve on mismatch. False with
// s.ids.parked set means the answer needs a resolution: park the frame.
func (w *accountWorkers) authoritative(s *scratch, did string, hs *hostState) bool {
	id, err := s.ids.Lookup(w.ctx, did)
	if s.ids.parked {
		return false
	}
	if err == nil && id.PDSHost == hs.name {
		return true
	}
	s.ids.Purge(did)
	id, err = s.ids.Lookup(w.ctx, did)
	return err == nil && id.PDSHost == hs.name
}

// desync marks an account desynchronized after a chain break or a
// re-activation, and asks the resyncer to repair it.
func (w *accountWorkers) desync(a *acctState, hs *hostState) {
	if a.local == store.LocalDesynchronized {
		return
	}
	a.local = store.LocalDesynchronized
	w.m.desyncMarked.Inc()
	w.resyncs.request(a.did(), hs.name)
}

// Takedown takes an account down: its events are no longer accepted or
// replayed, and consumers get the relay's #account {active:false,
// status:takendown}.
func (r *Relay) Takedown(ctx context.Context, did string) error {
	return r.actions.run(ctx, did, ctlTakedown)
}

// Suspend is a time-limited takedown (status suspended).
func (r *Relay) Suspend(ctx context.Context, did string) error {
	return r.actions.run(ctx, did, ctlSuspend)
}

// ReverseTakedown lifts a takedown or suspension and emits the recomputed view.
func (r *Relay) ReverseTakedown(ctx context.Context, did string) error {
	return r.actions.run(ctx, did, ctlReverseTakedown)
}

// Resync marks an account desynchronized and queues a repair.
func (r *Relay) Resync(ctx context.Context, did string) error {
	return r.actions.run(ctx, did, ctlResync)
}

// accountActions is the operator's path to accounts (takedowns, resyncs,
// host limits) and the resyncer's way back in: each action is queued as a
// control task on the DID's worker, ordered with the account's events, and
// run there (accountWorkers.runControl). Safe for concurrent use: admin
// handlers, the resyncer and the start-up recovery goroutine call it.
type accountActions struct {
	// Static after New.
	pool    *pool.Workers[task, scratch]
	st      *store.Store
	hosts   *hostTable
	resyncs *resyncs
	now     func() time.Time
	log     *slog.Logger
}

// run checks did and runs action k on its worker, waiting for the outcome.
func (ac *accountActions) run(ctx context.Context, did string, k controlKind) error {
	if syntax.CheckDID([]byte(did)) != nil {
		return fmt.Errorf("%w: %q", ErrBadDID, did)
	}
	return ac.do(ctx, &control{did: did, kind: k, done: make(chan error, 1)})
}

// do queues c and waits for its outcome or ctx.
func (ac *accountActions) do(ctx context.Context, c *control) error {
	if err := ac.submit(ctx, c); err != nil {
		return err
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// submit queues an account action on the DID's worker, so it is ordered
// with the account's events.
func (ac *accountActions) submit(ctx context.Context, c *control) error {
	return ac.pool.SubmitBytes(ctx, []byte(c.did), task{ctl: c, start: ac.now()}, 1)
}

// runControl executes an account action on the DID's worker.
func (w *accountWorkers) runControl(s *scratch, t task) {
	c := t.ctl
	a, err := w.load(s, []byte(c.did))
	if err == nil && !a.known {
		err = ErrUnknownAccount
	}
	if err != nil {
		c.done <- err
		return
	}
	switch c.kind {
	case ctlResyncDone:
		w.applyResync(s, t, a)
		c.done <- nil
		return
	case ctlUnthrottle:
		c.done <- w.unthrottle(a)
		return
	}
	var local store.LocalStatus
	switch c.kind {
	case ctlTakedown:
		local = store.LocalTakendown
	case ctlSuspend:
		local = store.LocalSuspended
	case ctlReverseTakedown:
		local = store.LocalActive
	case ctlResync:
		if hs := w.hosts.lookup(a.host); hs != nil {
			w.desync(a, hs)
		}
		local = a.local
	}
	if err := w.st.SetLocalStatus([]byte(c.did), local); err != nil {
		c.done <- err
		return
	}
	prev := a.local
	a.local = local
	if prev == local || c.kind == ctlResync {
		c.done <- nil
		return
	}
	// Emit the relay's own #account for the change.
	tm := []byte(w.now().UTC().Format("2006-01-02T15:04:05.000Z"))
	view := accountView(a, a.upstream == store.StatusActive, []byte(a.upstream.String()), []byte(c.did), tm)
	view.Seq = 1
	out := w.bufs.Get(len(c.did) + 160)
	out.B = event.AppendAccount(out.B[:0], &view)
	res := result{worker: s.id, start: t.start, kind: event.KindAccount, frameLen: len(out.B)}
	res.ev.Kind = store.KindAccount
	appendEventState(out, &res.ev, c.did, nil)
	res.out = out
	a.ticket = s.ticket + 1
	w.send(s, res)
	c.done <- nil
}

// SetHostLimits changes a host's account limit and trust. Raising the limit
// lets host-throttled accounts in up to it, marks them desynchronized and
// queues their resync (events were refused meanwhile), so none stays
// silently missing. Finding them scans the account table once.
func (r *Relay) SetHostLimits(ctx context.Context, hostname string, accountLimit uint64, trusted bool) error {
	return r.actions.setHostLimits(ctx, hostname, accountLimit, trusted)
}

// setHostLimits is SetHostLimits.
func (ac *accountActions) setHostLimits(ctx context.Context, hostname string, accountLimit uint64, trusted bool) error {
	id, room, err := ac.hosts.setLimits(hostname, accountLimit, trusted)
	if err != nil || room <= 0 {
		return err
	}
	var dids []string
	err = ac.st.ScanAccounts(func(a *store.Account) bool {
		if a.Host == id && a.LocalStatus == store.LocalHostThrottled {
			dids = append(dids, string(a.DID))
		}
		return int64(len(dids)) < room
	})
	if err != nil {
		return err
	}
	for _, did := range dids {
		if err := ac.do(ctx, &control{did: did, kind: ctlUnthrottle, done: make(chan error, 1)}); err != nil {
			return err
		}
	}
	return nil
}

// unthrottle lets a host-throttled account in if its host has room: the
// row is counted and marked desynchronized in one write, then resynced.
// Runs on the DID's worker.
func (w *accountWorkers) unthrottle(a *acctState) error {
	if a.local != store.LocalHostThrottled {
		return nil
	}
	hs := w.hosts.lookup(a.host)
	if hs == nil || hs.accounts.Load() >= int64(hs.accountLimit.Load()) {
		return nil
	}
	if _, err := w.st.ReleaseThrottled([]byte(a.did()), store.LocalDesynchronized); err != nil {
		return err
	}
	hs.accounts.Add(1)
	a.local = store.LocalDesynchronized
	w.m.unthrottled.Inc()
	w.m.desyncMarked.Inc()
	w.resyncs.request(a.did(), hs.name)
	return nil
}

// identityTag names an #identity event for identity.Refresh and Reresolve:
// its host and upstream seq. Collisions only ever hand an event a fresher
// document than its own (see Refresh).
func identityTag(hs *hostState, seq int64) uint64 {
	return uint64(hs.id)<<40 ^ uint64(seq)
}
