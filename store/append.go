package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Event is one event handed to Stage: what the store needs to decide
// whether it is logged and to apply its account and host updates. Byte
// fields are read during Stage only; the caller may reuse them afterwards.
// The frame is not here: it carries the seq, which the caller assigns once
// Stage has decided, and reaches the store through Staged.Commit.
type Event struct {
	Kind Kind
	DID  []byte // the account the event is about; empty for none

	// Host is the upstream host the event came from (HostNone for events
	// the relay generates). A new account is created on this host; an
	// applied rev update from another host moves the account to it.
	Host HostID
	// Cursor, if non-zero, is persisted as Host's upstream cursor in the
	// same batch. It is applied even when the event is dropped as stale:
	// the upstream event was fully processed either way.
	Cursor uint64

	// Rev, Commit and Data, when Rev is non-empty, are the account's new
	// repo state. The update is conditional: a rev not greater than the
	// stored one (byte order, which is TID order) drops the event, except
	// that a KindSync event may repeat the stored rev as a no-op.
	Rev, Commit, Data []byte

	// Status, unless StatusUnchanged, sets the account's upstream status.
	Status AccountStatus

	// Local, unless zero, sets the account's local status in the same
	// batch (a chain break marking it desynchronized, a #sync clearing
	// that mark), so the mark and the event it belongs to are durable
	// together. Only non-hiding statuses are allowed (LocalActive,
	// LocalThrottled, LocalDesynchronized, LocalHostThrottled): takedowns
	// and suspensions go through SetLocalStatus, which maintains the
	// replay filter. It is not applied when the event is dropped as stale.
	Local LocalStatus
}

// Outcome is what Stage decided for one event.
type Outcome uint8

// Outcomes.
const (
	// Written: the event is logged; its account update, if any, applies.
	Written Outcome = 1
	// WrittenSameRev: a #sync repeating the stored rev is logged; the
	// repo state is left as it was.
	WrittenSameRev Outcome = 2
	// DroppedStale: the rev was not greater than the stored one; the event
	// is not logged and gets no seq.
	DroppedStale Outcome = 3
)

// String names the outcome.
func (o Outcome) String() string {
	switch o {
	case Written:
		return "written"
	case WrittenSameRev:
		return "written-same-rev"
	case DroppedStale:
		return "dropped-stale"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Logged reports whether the event is logged: whether Commit expects a row
// (a seq and a frame) for it.
func (o Outcome) Logged() bool { return o == Written || o == WrittenSameRev }

// validate checks e against the size and value limits before anything is
// written.
func (e *Event) validate() error {
	switch {
	case !e.Kind.valid():
		return fmt.Errorf("%w: %d", ErrBadKind, e.Kind)
	case len(e.DID) > MaxDIDBytes:
		return fmt.Errorf("%w: DID of %d bytes", ErrTooLong, len(e.DID))
	case len(e.Rev) > MaxRevBytes:
		return fmt.Errorf("%w: rev of %d bytes", ErrTooLong, len(e.Rev))
	case len(e.Commit) > MaxCIDBytes || len(e.Data) > MaxCIDBytes:
		return fmt.Errorf("%w: CID of %d/%d bytes", ErrTooLong, len(e.Commit), len(e.Data))
	case e.Status != StatusUnchanged && !e.Status.valid():
		return fmt.Errorf("%w: account status %d", ErrBadStatus, e.Status)
	case e.Local != 0 && (!e.Local.valid() || e.Local.hides()):
		return fmt.Errorf("%w: event local status %d", ErrBadStatus, e.Local)
	case e.Local != 0 && len(e.DID) == 0:
		return fmt.Errorf("%w: local status without a DID", ErrBadStatus)
	}
	return nil
}

// Staged is a group commit between Stage and Commit: every event's outcome
// is decided, and the account, host-cursor and uid updates wait in the
// writer's Pebble batch for the log rows. It holds the store's writer lock
// from Stage until Commit returns, so no other write can slip between the
// decision and the log rows it implies.
//
// A Staged belongs to the store and is reused by the next Stage; it is
// valid until its Commit. Owned by the goroutine that called Stage.
type Staged struct {
	s        *Store
	now      int64  // the batch's commit time, Unix ms (never below the last)
	uid      uint64 // last assigned account uid once the batch is durable
	accepted int    // events whose Outcome is Logged: the rows Commit expects
	live     bool   // between Stage and Commit
}

// Stage decides, in order, what becomes of each event of one group commit
// and appends one Outcome per event to outcomes: the conditional rev
// update, account creation, status changes and host cursors are applied to
// a pending Pebble batch, checking against earlier events of the same call
// too. Nothing is written yet and no seq is assigned: the caller gives each
// event whose Outcome is Logged the next seq, in event order, builds its
// frame, and hands the rows to Commit, which writes everything in one
// batch.
//
// On success Stage returns holding the store's writer lock, which Commit
// releases: the caller must call Commit exactly once, without other store
// writes in between (they would wait for the lock forever). On error
// nothing is held and nothing was written; a bad event refuses the whole
// call.
//
// Stage and Commit are meant for the relay's single sequencer goroutine.
// At steady state they allocate nothing.
func (s *Store) Stage(events []Event, outcomes []Outcome) (*Staged, []Outcome, error) {
	if len(events) > s.opts.MaxBatchEvents {
		return nil, outcomes, fmt.Errorf("%w: %d events", ErrBatchTooBig, len(events))
	}
	for i := range events {
		if err := events[i].validate(); err != nil {
			return nil, outcomes, fmt.Errorf("store: event %d: %w", i, err)
		}
	}
	s.w.Lock()
	base := len(outcomes)
	outcomes, err := s.stageLocked(events, outcomes)
	if err != nil {
		s.w.Unlock()
		return nil, outcomes[:base], err
	}
	return &s.w.staged, outcomes, nil
}

// stageLocked is Stage under the writer lock. REQUIRES: s.w held.
func (s *Store) stageLocked(events []Event, outcomes []Outcome) ([]Outcome, error) {
	if err := s.checkWritableLocked(); err != nil {
		return outcomes, err
	}
	w := &s.w
	now := s.nowLocked()
	w.batch.Reset()
	w.pend.reset()
	clear(w.hostIdx)
	w.hostStage = w.hostStage[:0]
	uid := w.lastUID
	accepted := 0
	for i := range events {
		ev := &events[i]
		outcome := Written
		if ev.Host != HostNone && ev.Cursor != 0 {
			h, err := s.stageHostLocked(ev.Host)
			if err != nil {
				return outcomes, err
			}
			h.Cursor = ev.Cursor
			h.Events++
		}
		if len(ev.DID) > 0 {
			var err error
			if outcome, err = s.applyAccountLocked(ev, now, &uid); err != nil {
				return outcomes, err
			}
		}
		if outcome.Logged() {
			accepted++
		}
		outcomes = append(outcomes, outcome)
	}
	if err := s.stageTailLocked(w.batch, uid); err != nil {
		return outcomes, err
	}
	w.staged = Staged{s: s, now: now, uid: uid, accepted: accepted, live: true}
	return outcomes, nil
}

// Commit adds the log rows of the staged events to the pending batch and
// commits it under the sync policy (one WAL sync), returning only once it
// is durable; it then releases the writer lock Stage took, also on error.
// rows are the events whose Outcome is Logged, in event order, each with
// its seq and its frame exactly as consumers will receive it. The seqs must
// continue the log without a gap: the first is NewestSeq()+1, each next one
// more. Rows that do not (ErrSeqOrder for a seq at or below the one before,
// ErrSeqGap for one further on), that break a size limit, or that do not
// match the staged events in number (ErrRowCount) refuse the whole group
// commit: nothing of it, not even the staged account updates, is written.
//
// Commit copies the rows' bytes into the batch and keeps none of them: the
// caller owns the frames and may release them once Commit returns. A failed
// commit makes the store refuse further writes (ErrFailed), because memory
// and disk may disagree.
func (t *Staged) Commit(rows []SeqEvent) error {
	if !t.live {
		return ErrNotStaged
	}
	s, w := t.s, &t.s.w
	t.live = false
	defer w.Unlock()
	if len(rows) != t.accepted {
		return fmt.Errorf("%w: %d rows for %d logged events", ErrRowCount, len(rows), t.accepted)
	}
	if err := checkRows(rows, w.lastSeq, true); err != nil {
		return err
	}
	if err := s.logRowsLocked(rows, t.now); err != nil {
		return err
	}
	if w.batch.Empty() {
		return nil
	}
	if err := s.commitLocked(w.batch); err != nil {
		return err
	}
	w.lastUID = t.uid
	if len(w.hostStage) > 0 {
		s.mu.Lock()
		for i := range w.hostStage {
			s.mu.hosts[w.hostStage[i].ID] = w.hostStage[i]
		}
		s.mu.Unlock()
	}
	s.publishRowsLocked(rows, t.now)
	return nil
}

// nowLocked is the commit time of a new batch in Unix milliseconds: the
// clock, but never before the previous batch's, so stored times only
// advance. REQUIRES: s.w held.
func (s *Store) nowLocked() int64 {
	return max(s.opts.Now().UnixMilli(), s.w.lastMilli)
}

// applyAccountLocked applies ev's account update to the batch's view of the
// account, loading it first. REQUIRES: s.w held.
func (s *Store) applyAccountLocked(ev *Event, now int64, uid *uint64) (Outcome, error) {
	p := &s.w.pend
	i := p.find(ev.DID)
	if i < 0 {
		var err error
		if i, err = s.loadPendingLocked(ev.DID); err != nil {
			return 0, err
		}
	}
	e := &p.items[i]
	a := &e.acct
	known := e.exists || e.isNew
	outcome := Written
	if len(ev.Rev) > 0 && known && len(a.Rev) > 0 {
		switch c := bytes.Compare(ev.Rev, a.Rev); {
		case c < 0, c == 0 && ev.Kind != KindSync:
			return DroppedStale, nil
		case c == 0:
			outcome = WrittenSameRev
		}
	}
	if !known {
		*uid++
		e.isNew = true
		a.UID = *uid
		a.Host = ev.Host
		a.UpstreamStatus = StatusActive
		a.LocalStatus = LocalActive
		a.Rev, a.Commit, a.Data = a.Rev[:0], a.Commit[:0], a.Data[:0]
		if ev.Host != HostNone {
			h, err := s.stageHostLocked(ev.Host)
			if err != nil {
				return 0, err
			}
			h.AccountCount++
		}
	}
	if len(ev.Rev) > 0 && outcome == Written {
		if ev.Host != HostNone && ev.Host != a.Host {
			if err := s.moveAccountLocked(a, ev.Host); err != nil {
				return 0, err
			}
		}
		a.Rev = append(a.Rev[:0], ev.Rev...)
		a.Commit = append(a.Commit[:0], ev.Commit...)
		a.Data = append(a.Data[:0], ev.Data...)
	}
	if ev.Status != StatusUnchanged {
		a.UpstreamStatus = ev.Status
	}
	if ev.Local != 0 {
		a.LocalStatus = ev.Local
	}
	a.LastSeenMilli = now
	return outcome, nil
}

// moveAccountLocked moves a to host `to`, keeping both hosts' account
// counts right. REQUIRES: s.w held.
func (s *Store) moveAccountLocked(a *Account, to HostID) error {
	if a.Host != HostNone {
		from, err := s.stageHostLocked(a.Host)
		if err != nil && !errors.Is(err, ErrNoHost) {
			return err
		}
		if err == nil && from.AccountCount > 0 {
			from.AccountCount--
		}
	}
	h, err := s.stageHostLocked(to)
	if err != nil {
		return err
	}
	h.AccountCount++
	a.Host = to
	return nil
}

// loadPendingLocked adds did's stored state to the batch's pending set.
// REQUIRES: s.w held.
func (s *Store) loadPendingLocked(did []byte) (int, error) {
	p := &s.w.pend
	i := p.add(did)
	e := &p.items[i]
	s.w.key = appendBytesKey(s.w.key[:0], prefixAccount, did)
	v, closer, err := s.db.Get(s.w.key)
	if errors.Is(err, pebble.ErrNotFound) {
		return i, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: read account: %w", err)
	}
	err = decodeAccount(v, &e.acct)
	closer.Close()
	if err != nil {
		return 0, fmt.Errorf("store: account %q: %w", did, err)
	}
	e.exists = true
	return i, nil
}

// stageHostLocked returns the batch's copy of host id, copying it from
// memory on first touch. The pointer is valid until the next stage call.
// REQUIRES: s.w held.
func (s *Store) stageHostLocked(id HostID) (*Host, error) {
	if i, ok := s.w.hostIdx[id]; ok {
		return &s.w.hostStage[i], nil
	}
	s.mu.RLock()
	h, ok := s.mu.hosts[id]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: id %d", ErrNoHost, id)
	}
	s.w.hostIdx[id] = len(s.w.hostStage)
	s.w.hostStage = append(s.w.hostStage, h)
	return &s.w.hostStage[len(s.w.hostStage)-1], nil
}

// stageTailLocked adds the touched accounts and hosts and the last uid to
// b. REQUIRES: s.w held.
func (s *Store) stageTailLocked(b *pebble.Batch, uid uint64) error {
	w := &s.w
	for i := 0; i < w.pend.n; i++ {
		a := &w.pend.items[i].acct
		if !w.pend.items[i].exists && !w.pend.items[i].isNew {
			continue // loaded as missing, then only dropped events touched it
		}
		w.key = appendBytesKey(w.key[:0], prefixAccount, a.DID)
		w.val = appendAccountValue(w.val[:0], a)
		if err := b.Set(w.key, w.val, nil); err != nil {
			return err
		}
		if w.pend.items[i].isNew {
			w.key = appendU64Key(w.key[:0], prefixUID, a.UID)
			if err := b.Set(w.key, a.DID, nil); err != nil {
				return err
			}
		}
	}
	for i := range w.hostStage {
		h := &w.hostStage[i]
		w.key = appendHostKey(w.key[:0], h.ID)
		w.val = appendHostValue(w.val[:0], h)
		if err := b.Set(w.key, w.val, nil); err != nil {
			return err
		}
	}
	if uid == w.lastUID {
		return nil
	}
	w.val = binary.BigEndian.AppendUint64(w.val[:0], uid)
	return b.Set(keyLastUID, w.val, nil)
}
