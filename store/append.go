package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Framer encodes one event's frame once its seq is known. AppendFrame
// appends the complete frame bytes (header and body, with seq inside) to dst
// and returns the extended slice; it must not keep dst.
type Framer interface {
	AppendFrame(dst []byte, seq Seq) []byte
}

// Event is one accepted event handed to Append. Byte fields are read during
// Append only; the caller may reuse them afterwards.
type Event struct {
	Kind  Kind
	DID   []byte // the account the event is about; empty for none
	Frame Framer

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

// Outcome is what Append did with one event.
type Outcome uint8

// Outcomes.
const (
	// Written: the event got a seq; its account update, if any, applied.
	Written Outcome = 1
	// WrittenSameRev: a #sync repeating the stored rev got a seq; the repo
	// state was left as it was.
	WrittenSameRev Outcome = 2
	// DroppedStale: the rev was not greater than the stored one; the event
	// was not logged and got no seq (Result.Seq is SeqNone).
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

// Result reports one event's fate, in the order of the events. A value
// owned by the caller.
type Result struct {
	Seq     Seq
	Outcome Outcome
}

// validate checks e against the size and value limits before anything is
// written.
func (e *Event) validate() error {
	switch {
	case !e.Kind.valid():
		return fmt.Errorf("%w: %d", ErrBadKind, e.Kind)
	case e.Frame == nil:
		return ErrNoFrame
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

// Append logs events in order, assigning each written event the next seq,
// and applies their account and host-cursor updates in the same Pebble
// batch, committed under the sync policy (one WAL sync per call). It
// appends one Result per event to results and returns it, only after the
// commit is durable. Each Framer is called once, with the event's seq,
// while the batch is built. A bad event refuses the whole call before
// anything is written; a failed commit makes the store refuse further
// writes (ErrFailed) because memory and disk may disagree.
//
// Append is meant for the relay's single sequencer goroutine; concurrent
// calls serialize. At steady state it allocates nothing.
func (s *Store) Append(events []Event, results []Result) ([]Result, error) {
	if len(events) > s.opts.MaxBatchEvents {
		return results, fmt.Errorf("%w: %d events", ErrBatchTooBig, len(events))
	}
	for i := range events {
		if err := events[i].validate(); err != nil {
			return results, fmt.Errorf("store: event %d: %w", i, err)
		}
	}
	s.w.Lock()
	defer s.w.Unlock()
	if err := s.checkWritableLocked(); err != nil {
		return results, err
	}
	w := &s.w
	now := s.opts.Now().UnixMilli()
	if now < w.lastMilli {
		now = w.lastMilli
	}
	b := w.batch
	b.Reset()
	w.pend.reset()
	clear(w.hostIdx)
	w.hostStage = w.hostStage[:0]
	seq, uid := w.lastSeq, w.lastUID
	base := len(results)
	for i := range events {
		ev := &events[i]
		outcome := Written
		if ev.Host != HostNone && ev.Cursor != 0 {
			h, err := s.stageHostLocked(ev.Host)
			if err != nil {
				return results[:base], err
			}
			h.Cursor = ev.Cursor
			h.Events++
		}
		if len(ev.DID) > 0 {
			var err error
			outcome, err = s.applyAccountLocked(ev, now, &uid)
			if err != nil {
				return results[:base], err
			}
			if outcome == DroppedStale {
				results = append(results, Result{Outcome: DroppedStale})
				continue
			}
		}
		if seq >= MaxSeq {
			return results[:base], ErrSeqExhausted
		}
		seq++
		w.key = appendEventKey(w.key[:0], seq)
		w.val = appendEventValue(w.val[:0], ev.Kind, now, ev.DID)
		head := len(w.val)
		w.val = ev.Frame.AppendFrame(w.val, seq)
		if n := len(w.val) - head; n > MaxFrameBytes || n == 0 {
			return results[:base], fmt.Errorf("store: event %d: %w: frame of %d bytes", i, ErrTooLong, n)
		}
		if err := b.Set(w.key, w.val, nil); err != nil {
			return results[:base], err
		}
		results = append(results, Result{Seq: seq, Outcome: outcome})
	}
	if err := s.stageTailLocked(b, seq, uid, now); err != nil {
		return results[:base], err
	}
	if b.Empty() {
		return results, nil
	}
	if err := s.commitLocked(b); err != nil {
		return results[:base], err
	}
	s.publishLocked(seq, uid, now)
	return results, nil
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

// stageTailLocked adds the touched accounts, hosts, meta counters and time
// index entry to b. REQUIRES: s.w held.
func (s *Store) stageTailLocked(b *pebble.Batch, seq Seq, uid uint64, now int64) error {
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
	if uid != w.lastUID {
		w.val = binary.BigEndian.AppendUint64(w.val[:0], uid)
		if err := b.Set(keyLastUID, w.val, nil); err != nil {
			return err
		}
	}
	if seq == w.lastSeq {
		return nil
	}
	w.val = binary.BigEndian.AppendUint64(w.val[:0], uint64(seq))
	if err := b.Set(keyLastSeq, w.val, nil); err != nil {
		return err
	}
	if sec := now / 1000; sec > w.lastTimeSec {
		w.key = appendU64Key(w.key[:0], prefixTime, uint64(sec))
		w.val = binary.BigEndian.AppendUint64(w.val[:0], uint64(w.lastSeq+1))
		return b.Set(w.key, w.val, nil)
	}
	return nil
}

// publishLocked makes a committed batch visible to readers. REQUIRES: s.w
// held.
func (s *Store) publishLocked(seq Seq, uid uint64, now int64) {
	w := &s.w
	if seq != w.lastSeq {
		if sec := now / 1000; sec > w.lastTimeSec {
			w.lastTimeSec = sec
		}
		w.lastMilli = now
	}
	w.lastSeq, w.lastUID = seq, uid
	if len(w.hostStage) > 0 {
		s.mu.Lock()
		for i := range w.hostStage {
			s.mu.hosts[w.hostStage[i].ID] = w.hostStage[i]
		}
		s.mu.Unlock()
	}
	s.newest.Store(uint64(seq))
}
