package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// This file is the write path of a splitter (engine/splitter): a store that
// copies another relay's event log and keeps that relay's seqs instead of
// assigning its own. The key layout and the event value are the package
// doc's; only who picks the seq differs.
//
// A log written by AppendAt keeps every invariant of the package doc except
// contiguity: seqs are strictly increasing but may jump forward (the
// upstream skipped seqs, or the splitter was away longer than the upstream's
// replay window). So read "every seq below meta 's' and at or above
// OldestSeq is present" as "every seq the upstream sent there is present";
// OldestSeq is the oldest retained seq that was logged, except just after a
// retention pass that emptied the log, when it may be the retention
// cut-off. A store is written either by Append (a relay) or by AppendAt (a
// splitter), never both.

// SeqEvent is one event handed to AppendAt, with the seq it is logged
// under. Byte fields are read during AppendAt only.
type SeqEvent struct {
	// Seq is the event's seq, chosen by the caller (the upstream relay's
	// seq, which Frame carries): in [1, MaxSeq], above every seq logged
	// before and above the previous event of the same call.
	Seq  Seq
	Kind Kind
	// DID is the account the event is about (empty for none); it feeds the
	// takedown filter of replay and the Jetstream view, as for Append.
	DID []byte
	// Frame is stored and replayed byte for byte.
	Frame []byte
}

// ErrSeqOrder is returned (wrapped) by AppendAt for a seq that is not above
// the newest logged seq or the previous event's.
var ErrSeqOrder = errors.New("store: seq not above the newest logged seq")

// AppendAt logs events under their own seqs, in one Pebble batch committed
// under the sync policy (one WAL sync per call), with meta 's' set to the
// last seq and the time index advanced like Append does. It returns only
// once the batch is durable. A bad event (kind, sizes, seq order) refuses
// the whole call before anything is written; a failed commit makes the
// store refuse further writes (ErrFailed).
//
// Like Append it is meant for one writer goroutine and allocates nothing at
// steady state.
func (s *Store) AppendAt(events []SeqEvent) error {
	if len(events) == 0 {
		return nil
	}
	if len(events) > s.opts.MaxBatchEvents {
		return fmt.Errorf("%w: %d events", ErrBatchTooBig, len(events))
	}
	for i := range events {
		if err := events[i].validate(); err != nil {
			return fmt.Errorf("store: event %d: %w", i, err)
		}
		if i > 0 && events[i].Seq <= events[i-1].Seq {
			return fmt.Errorf("store: event %d: %w: %d after %d", i, ErrSeqOrder, events[i].Seq, events[i-1].Seq)
		}
	}
	s.w.Lock()
	defer s.w.Unlock()
	if err := s.checkWritableLocked(); err != nil {
		return err
	}
	w := &s.w
	first, last := events[0].Seq, events[len(events)-1].Seq
	if first <= w.lastSeq {
		return fmt.Errorf("%w: %d after %d", ErrSeqOrder, first, w.lastSeq)
	}
	now := s.opts.Now().UnixMilli()
	if now < w.lastMilli {
		now = w.lastMilli
	}
	b := w.batch
	b.Reset()
	for i := range events {
		ev := &events[i]
		w.key = appendEventKey(w.key[:0], ev.Seq)
		w.val = appendEventValue(w.val[:0], ev.Kind, now, ev.DID)
		w.val = append(w.val, ev.Frame...)
		if err := b.Set(w.key, w.val, nil); err != nil {
			return err
		}
	}
	w.val = binary.BigEndian.AppendUint64(w.val[:0], uint64(last))
	if err := b.Set(keyLastSeq, w.val, nil); err != nil {
		return err
	}
	sec := now / 1000
	if sec > w.lastTimeSec {
		// The first seq committed in this second is this batch's first.
		w.key = appendU64Key(w.key[:0], prefixTime, uint64(sec))
		w.val = binary.BigEndian.AppendUint64(w.val[:0], uint64(first))
		if err := b.Set(w.key, w.val, nil); err != nil {
			return err
		}
	}
	if err := s.commitLocked(b); err != nil {
		return err
	}
	w.lastTimeSec = max(w.lastTimeSec, sec)
	w.lastMilli = now
	w.lastSeq = last
	if s.oldest.Load() > s.newest.Load() {
		// The log was empty: its oldest event is this batch's first, not
		// the seq after the previous newest (there may be a jump between).
		// Readers see an empty log until newest moves below.
		s.oldest.Store(uint64(first))
	}
	s.newest.Store(uint64(last))
	return nil
}

// validate checks e against the size and value limits.
func (e *SeqEvent) validate() error {
	switch {
	case e.Seq == SeqNone || e.Seq > MaxSeq:
		return fmt.Errorf("%w: seq %d outside [1, MaxSeq]", ErrSeqOrder, e.Seq)
	case !e.Kind.valid():
		return fmt.Errorf("%w: %d", ErrBadKind, e.Kind)
	case len(e.DID) > MaxDIDBytes:
		return fmt.Errorf("%w: DID of %d bytes", ErrTooLong, len(e.DID))
	case len(e.Frame) == 0 || len(e.Frame) > MaxFrameBytes:
		return fmt.Errorf("%w: frame of %d bytes", ErrTooLong, len(e.Frame))
	}
	return nil
}
