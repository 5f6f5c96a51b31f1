package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// GetAccount reads did's state into dst, reusing dst's buffers, and
// reports whether the account exists. Safe for concurrent use.
func (s *Store) GetAccount(did []byte, dst *Account) (bool, error) {
	if s.closed.Load() {
		return false, ErrClosed
	}
	if len(did) == 0 || len(did) > MaxDIDBytes {
		return false, fmt.Errorf("%w: DID of %d bytes", ErrTooLong, len(did))
	}
	var kb [1 + 64]byte
	key := appendBytesKey(kb[:0], prefixAccount, did)
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: read account: %w", err)
	}
	defer closer.Close()
	if err := decodeAccount(v, dst); err != nil {
		return false, fmt.Errorf("store: account %q: %w", did, err)
	}
	dst.DID = append(dst.DID[:0], did...)
	return true, nil
}

// getAccountLocked is GetAccount for a write: it first reports why no
// write may start (checkWritableLocked). REQUIRES s.w held.
func (s *Store) getAccountLocked(did []byte, dst *Account) (bool, error) {
	if err := s.checkWritableLocked(); err != nil {
		return false, err
	}
	return s.GetAccount(did, dst)
}

// newAccountLocked returns the row of an account this store has not seen,
// with the next uid, upstream-active and seen now, and adds its uid index
// and the uid counter to b. The caller writes the row and, once b
// commits, sets s.w.lastUID to its UID. REQUIRES s.w held.
func (s *Store) newAccountLocked(b *pebble.Batch, did []byte, host HostID) Account {
	uid := s.w.lastUID + 1
	_ = b.Set(appendU64Key(nil, prefixUID, uid), did, nil)
	_ = b.Set(keyLastUID, binary.BigEndian.AppendUint64(nil, uid), nil)
	return Account{UID: uid, Host: host, UpstreamStatus: StatusActive, LastSeenMilli: s.opts.Now().UnixMilli()}
}

// ListAccounts returns up to limit accounts in creation order, starting
// after the account with uid afterUID (0 starts at the beginning): the
// stable order listRepos pages in. The result is a consistent snapshot and
// owns its memory. Safe for concurrent use.
func (s *Store) ListAccounts(afterUID uint64, limit int) ([]Account, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if limit <= 0 {
		return nil, nil
	}
	if afterUID == ^uint64(0) {
		return nil, nil
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	lower := appendU64Key(nil, prefixUID, afterUID+1)
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{prefixUID + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []Account
	var key []byte
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		uid, err := parseU64Key(it.Key(), prefixUID)
		if err != nil {
			return out, err
		}
		did, err := it.ValueAndErr()
		if err != nil {
			return out, err
		}
		key = appendBytesKey(key[:0], prefixAccount, did)
		v, closer, err := snap.Get(key)
		if err != nil {
			return out, fmt.Errorf("store: uid %d → %q: %w", uid, did, err)
		}
		var a Account
		err = decodeAccount(v, &a)
		closer.Close()
		if err != nil {
			return out, err
		}
		if a.UID != uid {
			return out, fmt.Errorf("%w: uid index %d points at account with uid %d", ErrCorrupt, uid, a.UID)
		}
		a.DID = append([]byte(nil), did...)
		out = append(out, a)
	}
	return out, it.Error()
}

// SetLocalStatus records the relay's own status for did (takedowns,
// suspensions, throttling). Taking an account down or suspending it hides
// its events logged so far from replay; restoring another status shows
// them again. Events the relay logs afterwards (its own #account) stay
// visible. Serializes with event writes.
func (s *Store) SetLocalStatus(did []byte, st LocalStatus) error {
	if !st.valid() {
		return fmt.Errorf("%w: local status %d", ErrBadStatus, st)
	}
	s.w.Lock()
	defer s.w.Unlock()
	var a Account
	ok, err := s.getAccountLocked(did, &a)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoAccount, did)
	}
	a.LocalStatus = st
	b := s.db.NewBatch()
	defer b.Close()
	key := appendBytesKey(nil, prefixAccount, did)
	_ = b.Set(key, appendAccountValue(nil, &a), nil)
	hkey := appendBytesKey(nil, prefixHidden, did)
	through := s.w.lastSeq
	if st.hides() {
		_ = b.Set(hkey, binary.BigEndian.AppendUint64(nil, uint64(through)), nil)
	} else {
		_ = b.Delete(hkey, nil)
	}
	if err := s.commitLocked(b); err != nil {
		return err
	}
	s.mu.Lock()
	if st.hides() {
		s.mu.hidden[string(did)] = through
	} else {
		delete(s.mu.hidden, string(did))
	}
	s.hiddenN.Store(int64(len(s.mu.hidden)))
	s.mu.Unlock()
	return nil
}

// hiddenThrough returns the seq at or below which did's events are hidden,
// or SeqNone.
func (s *Store) hiddenThrough(did []byte) Seq {
	if s.hiddenN.Load() == 0 {
		return SeqNone
	}
	s.mu.RLock()
	seq := s.mu.hidden[string(did)]
	s.mu.RUnlock()
	return seq
}
