package store

import (
	"encoding/binary"
	"fmt"
)

// This file holds the two writes a switch from another relay needs and the
// relay's own traffic never makes: moving the next seq forward past the
// other relay's, and recording a takedown for an account this store has
// not seen yet.

// AdvanceSeq makes the next assigned seq at least next, so that consumers
// holding a cursor from another relay (below next) are never handed a seq
// they think they already have. It reports whether it moved anything: a
// store whose next seq is already at or above next is left alone, so the
// call is idempotent and never moves seqs backwards.
//
// On a log that already holds events this leaves a gap between the last
// logged seq and next, the one exception to "contiguous" in the package
// invariants; replay and consumers only need seqs to increase (the
// reference relay's --initial-seq-number jumps the same way). Serializes
// with event writes.
func (s *Store) AdvanceSeq(next Seq) (bool, error) {
	if next == SeqNone || next > MaxSeq {
		return false, fmt.Errorf("%w: next seq %d outside [1, MaxSeq]", ErrBadOptions, next)
	}
	s.w.Lock()
	defer s.w.Unlock()
	if err := s.checkWritableLocked(); err != nil {
		return false, err
	}
	last := next - 1
	if last <= s.w.lastSeq {
		return false, nil
	}
	empty := s.oldest.Load() > s.newest.Load()
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(keyLastSeq, binary.BigEndian.AppendUint64(nil, uint64(last)), nil)
	if err := s.commitLocked(b); err != nil {
		return false, err
	}
	s.w.lastSeq = last
	if empty {
		// An empty log's oldest seq is the next one to be written (as
		// loadLogBounds computes it at open).
		s.oldest.Store(uint64(next))
	}
	s.newest.Store(uint64(last))
	return true, nil
}

// ImportTakedown takes did down, creating its account row if the store
// has none: a takedown carried over from another relay must hold before
// the account's first event arrives here, and the relay drops events of
// taken-down accounts it knows. A created account belongs to no host
// (HostNone), has no repo state yet and is upstream-active; its first
// accepted commit after a reversal binds it to its host like a migration.
// It reports whether it created the row. An account already taken down is
// left as it is. Meant for a store no relay is running on (the engine
// caches account state; a running relay takes accounts down through its
// own Takedown). Serializes with event writes.
func (s *Store) ImportTakedown(did []byte) (bool, error) {
	s.w.Lock()
	defer s.w.Unlock()
	var a Account
	found, err := s.getAccountLocked(did, &a)
	if err != nil {
		return false, err
	}
	if found && a.LocalStatus == LocalTakendown {
		return false, nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	if !found {
		a = s.newAccountLocked(b, did, HostNone)
	}
	a.LocalStatus = LocalTakendown
	_ = b.Set(appendBytesKey(nil, prefixAccount, did), appendAccountValue(nil, &a), nil)
	// Like SetLocalStatus: events logged so far are hidden from replay.
	through := s.w.lastSeq
	_ = b.Set(appendBytesKey(nil, prefixHidden, did), binary.BigEndian.AppendUint64(nil, uint64(through)), nil)
	if err := s.commitLocked(b); err != nil {
		return false, err
	}
	if !found {
		s.w.lastUID = a.UID
	}
	s.mu.Lock()
	s.mu.hidden[string(did)] = through
	s.hiddenN.Store(int64(len(s.mu.hidden)))
	s.mu.Unlock()
	return !found, nil
}
