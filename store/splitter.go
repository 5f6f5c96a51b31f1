package store

import "fmt"

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
// cut-off. A store is written either by Stage and Commit (a relay) or by
// AppendAt (a splitter), never both.

// AppendAt logs events under their own seqs, in one Pebble batch committed
// under the sync policy (one WAL sync per call), with meta 's' set to the
// last seq and the time index advanced as Staged.Commit does. Seqs must
// rise (ErrSeqOrder) but may jump. It returns only once the batch is
// durable. A bad event refuses the whole call before anything is written;
// a failed commit makes the store refuse further writes (ErrFailed).
//
// Like Stage and Commit it is meant for one writer goroutine and allocates
// nothing at steady state.
func (s *Store) AppendAt(events []SeqEvent) error {
	if len(events) == 0 {
		return nil
	}
	if len(events) > s.opts.MaxBatchEvents {
		return fmt.Errorf("%w: %d events", ErrBatchTooBig, len(events))
	}
	s.w.Lock()
	defer s.w.Unlock()
	if err := s.checkWritableLocked(); err != nil {
		return err
	}
	if err := checkRows(events, s.w.lastSeq, false); err != nil {
		return err
	}
	now := s.nowLocked()
	s.w.batch.Reset()
	if err := s.logRowsLocked(events, now); err != nil {
		return err
	}
	if err := s.commitLocked(s.w.batch); err != nil {
		return err
	}
	s.publishRowsLocked(events, now)
	return nil
}
