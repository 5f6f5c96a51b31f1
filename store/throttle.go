package store

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Host-throttled accounts (spec §14.3, issue 6 "Hosts and limits"): an
// account a host announces past its account limit gets an account row with
// local status LocalHostThrottled and no event, so the refusal survives a
// restart and raising the limit can find and re-activate it. Such a row is
// not counted in its host's AccountCount (the count is what the limit is
// compared with); ReleaseThrottled counts it when it is let in.

// MarkHostThrottled records did as refused by host's account limit: it
// creates the account row (new uid, upstream active, local
// LocalHostThrottled, no repo state) without logging an event. It reports
// false, changing nothing, when the account already exists. Serializes
// with event writes.
func (s *Store) MarkHostThrottled(did []byte, host HostID) (bool, error) {
	s.w.Lock()
	defer s.w.Unlock()
	var a Account
	ok, err := s.getAccountLocked(did, &a)
	if err != nil {
		return false, err
	}
	if _, hostOK := s.GetHost(host); !hostOK {
		return false, fmt.Errorf("%w: id %d", ErrNoHost, host)
	}
	if ok {
		return false, nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	a = s.newAccountLocked(b, did, host)
	a.LocalStatus = LocalHostThrottled
	_ = b.Set(appendBytesKey(nil, prefixAccount, did), appendAccountValue(nil, &a), nil)
	if err := s.commitLocked(b); err != nil {
		return false, err
	}
	s.w.lastUID = a.UID
	return true, nil
}

// ReleaseThrottled lets a host-throttled account in: its local status
// becomes to (which must be a non-hiding status other than
// LocalHostThrottled; the relay uses LocalDesynchronized, since events
// were refused meanwhile) and it is counted in its host's AccountCount, in
// one batch. It reports false, changing nothing, when the account is not
// host-throttled, and ErrNoAccount when it does not exist. Serializes with
// event writes.
func (s *Store) ReleaseThrottled(did []byte, to LocalStatus) (bool, error) {
	if !to.valid() || to.hides() || to == LocalHostThrottled {
		return false, fmt.Errorf("%w: release to local status %d", ErrBadStatus, to)
	}
	s.w.Lock()
	defer s.w.Unlock()
	var a Account
	ok, err := s.getAccountLocked(did, &a)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, fmt.Errorf("%w: %q", ErrNoAccount, did)
	}
	if a.LocalStatus != LocalHostThrottled {
		return false, nil
	}
	a.LocalStatus = to
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(appendBytesKey(nil, prefixAccount, did), appendAccountValue(nil, &a), nil)
	s.mu.RLock()
	h, hostOK := s.mu.hosts[a.Host]
	s.mu.RUnlock()
	if hostOK {
		h.AccountCount++
		_ = b.Set(appendHostKey(nil, h.ID), appendHostValue(nil, &h), nil)
	}
	if err := s.commitLocked(b); err != nil {
		return false, err
	}
	if hostOK {
		s.mu.Lock()
		s.mu.hosts[h.ID] = h
		s.mu.Unlock()
	}
	return true, nil
}

// ScanAccounts calls fn for every account in DID order, over a consistent
// snapshot, until fn returns false. The Account passed to fn (DID
// included) is reused for the next call: copy what must outlive it. It
// reads the whole account table, so it is meant for start-up and rare
// admin actions (finding desynchronized or host-throttled accounts), not
// for request paths. Safe for concurrent use.
func (s *Store) ScanAccounts(fn func(a *Account) bool) error {
	if s.closed.Load() {
		return ErrClosed
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixAccount}, UpperBound: []byte{prefixAccount + 1}})
	if err != nil {
		return err
	}
	var a Account
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return err
		}
		if err := decodeAccount(v, &a); err != nil {
			_ = it.Close()
			return err
		}
		a.DID = append(a.DID[:0], it.Key()[1:]...)
		if !fn(&a) {
			break
		}
	}
	return it.Close()
}
