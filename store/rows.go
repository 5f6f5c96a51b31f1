package store

import (
	"encoding/binary"
	"fmt"
)

// This file holds what both write paths of the event log share: the row
// (SeqEvent) the caller hands in with its seq and frame, the checks on a
// batch of rows, writing them with meta 's' and the time index, and making
// them visible to readers. A relay's sequencer writes rows through
// Staged.Commit (contiguous seqs, after Stage decided the events); a
// splitter writes them through AppendAt (its upstream's seqs, gaps allowed).

// SeqEvent is one log row: an event with the seq it is logged under and
// the frame consumers receive. Byte fields are read during the call that
// takes it only; the store copies them into its batch and keeps none.
type SeqEvent struct {
	// Seq is the event's seq, chosen by the caller: in [1, MaxSeq] and
	// above every seq logged before it.
	Seq  Seq
	Kind Kind
	// DID is the account the event is about (empty for none); it feeds the
	// takedown filter of replay and the Jetstream view.
	DID []byte
	// Frame is stored and replayed byte for byte: it must carry Seq.
	Frame []byte
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

// checkRows validates rows and their order after last, the newest logged
// seq: strictly increasing, and when contiguous each exactly one above the
// one before.
func checkRows(rows []SeqEvent, last Seq, contiguous bool) error {
	for i := range rows {
		r := &rows[i]
		if err := r.validate(); err != nil {
			return fmt.Errorf("store: event %d: %w", i, err)
		}
		switch {
		case r.Seq <= last:
			return fmt.Errorf("store: event %d: %w: %d after %d", i, ErrSeqOrder, r.Seq, last)
		case contiguous && r.Seq != last+1:
			return fmt.Errorf("store: event %d: %w: %d after %d", i, ErrSeqGap, r.Seq, last)
		}
		last = r.Seq
	}
	return nil
}

// logRowsLocked adds rows (checked), meta 's' and the time index entry
// to the writer's batch, all stamped with commit time now. Each frame is
// copied once, straight into the batch. REQUIRES: s.w held.
func (s *Store) logRowsLocked(rows []SeqEvent, now int64) error {
	if len(rows) == 0 {
		return nil
	}
	w := &s.w
	b := w.batch
	for i := range rows {
		r := &rows[i]
		w.key = appendEventKey(w.key[:0], r.Seq)
		w.val = appendEventValue(w.val[:0], r.Kind, now, r.DID)
		op := b.SetDeferred(len(w.key), len(w.val)+len(r.Frame))
		copy(op.Key, w.key)
		copy(op.Value[copy(op.Value, w.val):], r.Frame)
		if err := op.Finish(); err != nil {
			return err
		}
	}
	w.val = binary.BigEndian.AppendUint64(w.val[:0], uint64(rows[len(rows)-1].Seq))
	if err := b.Set(keyLastSeq, w.val, nil); err != nil {
		return err
	}
	if sec := now / 1000; sec > w.lastTimeSec {
		// The first seq committed in this second is this batch's first.
		w.key = appendU64Key(w.key[:0], prefixTime, uint64(sec))
		w.val = binary.BigEndian.AppendUint64(w.val[:0], uint64(rows[0].Seq))
		return b.Set(w.key, w.val, nil)
	}
	return nil
}

// publishRowsLocked makes committed rows visible to readers. REQUIRES: s.w
// held.
func (s *Store) publishRowsLocked(rows []SeqEvent, now int64) {
	if len(rows) == 0 {
		return
	}
	w := &s.w
	first, last := rows[0].Seq, rows[len(rows)-1].Seq
	w.lastTimeSec = max(w.lastTimeSec, now/1000)
	w.lastMilli = now
	w.lastSeq = last
	if s.oldest.Load() > s.newest.Load() {
		// The log was empty: its oldest event is this batch's first, which
		// for a splitter may lie past the seq after the previous newest.
		// Readers see an empty log until newest moves below.
		s.oldest.Store(uint64(first))
	}
	s.newest.Store(uint64(last))
}
