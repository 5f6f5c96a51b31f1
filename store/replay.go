package store

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// OldestSeq returns the oldest retained seq, or SeqNone if the log is
// empty. Safe for concurrent use.
func (s *Store) OldestSeq() Seq {
	oldest, newest := s.oldest.Load(), s.newest.Load()
	if oldest > newest {
		return SeqNone
	}
	return Seq(oldest)
}

// NewestSeq returns the newest durable seq, or the seq just below
// Options.InitialSeq for a fresh database. Safe for concurrent use.
func (s *Store) NewestSeq() Seq { return Seq(s.newest.Load()) }

// SeqAtTime returns the first seq committed at or after t, at one-second
// granularity, so that cursor seq−1 replays from t. ok is false when
// nothing was committed at or after t; if t is before the retained window
// the result can be below OldestSeq. Safe for concurrent use.
func (s *Store) SeqAtTime(t time.Time) (seq Seq, ok bool, err error) {
	if s.closed.Load() {
		return SeqNone, false, ErrClosed
	}
	sec := t.Unix()
	if sec < 0 {
		sec = 0
	}
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: appendU64Key(nil, prefixTime, uint64(sec)),
		UpperBound: []byte{prefixTime + 1},
	})
	if err != nil {
		return SeqNone, false, err
	}
	defer it.Close()
	if !it.First() {
		return SeqNone, false, it.Error()
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return SeqNone, false, err
	}
	if len(v) != 8 {
		return SeqNone, false, fmt.Errorf("%w: time index value %x", ErrCorrupt, v)
	}
	return Seq(binary.BigEndian.Uint64(v)), true, nil
}

// Iterator replays the log from a cursor. It reads through a Pebble
// iterator (block-sized read-ahead, no unbounded buffering) over a
// snapshot of the log taken when it was created; events committed later
// need a new Iterator from the last seq seen. Events of accounts taken
// down or suspended, logged before the takedown, are skipped. An Iterator
// is used by one goroutine.
type Iterator struct {
	// Static after NewIterator.
	s  *Store
	it *pebble.Iterator

	// Owned by the iterating goroutine.
	started bool
	seq     Seq
	ev      eventView
	err     error
	lower   [9]byte
	upper   [9]byte
}

// NewIterator returns an iterator over events with cursor < seq <=
// NewestSeq(): only events whose commit has returned. Close it before
// closing the store.
func (s *Store) NewIterator(cursor Seq) (*Iterator, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	r := &Iterator{s: s}
	start := uint64(cursor) + 1
	if cursor >= MaxSeq {
		start = uint64(MaxSeq) + 1
	}
	appendEventKey(r.lower[:0], Seq(start))
	appendEventKey(r.upper[:0], Seq(s.newest.Load()+1))
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: r.lower[:], UpperBound: r.upper[:]})
	if err != nil {
		return nil, err
	}
	r.it = it
	return r, nil
}

// Next advances to the next visible event and reports whether there is
// one. At the end, or on error (see Err), it returns false.
func (r *Iterator) Next() bool {
	if r.err != nil {
		return false
	}
	for {
		var ok bool
		if !r.started {
			r.started = true
			ok = r.it.First()
		} else {
			ok = r.it.Next()
		}
		if !ok {
			r.err = r.it.Error()
			return false
		}
		k := r.it.Key()
		if len(k) != 9 {
			r.err = fmt.Errorf("%w: event key %x", ErrCorrupt, k)
			return false
		}
		v, err := r.it.ValueAndErr()
		if err != nil {
			r.err = err
			return false
		}
		if err := decodeEvent(v, &r.ev); err != nil {
			r.err = fmt.Errorf("store: event %d: %w", binary.BigEndian.Uint64(k[1:]), err)
			return false
		}
		r.seq = Seq(binary.BigEndian.Uint64(k[1:]))
		if len(r.ev.did) > 0 && r.seq <= r.s.hiddenThrough(r.ev.did) {
			continue
		}
		return true
	}
}

// Seq returns the current event's seq.
func (r *Iterator) Seq() Seq { return r.seq }

// Frame returns the current event's frame bytes, exactly as consumers
// receive them. The slice is valid until the next call of Next or Close.
func (r *Iterator) Frame() []byte { return r.ev.frame }

// DID returns the current event's account DID (empty for none), valid
// until the next call of Next or Close.
func (r *Iterator) DID() []byte { return r.ev.did }

// Kind returns the current event's kind.
func (r *Iterator) Kind() Kind { return r.ev.kind }

// TimeMilli returns the current event's commit time, Unix milliseconds.
func (r *Iterator) TimeMilli() int64 { return r.ev.unixMilli }

// Err returns the error that ended iteration, if any.
func (r *Iterator) Err() error { return r.err }

// Close releases the iterator.
func (r *Iterator) Close() error {
	if r.it == nil {
		return nil
	}
	err := r.it.Close()
	r.it = nil
	return err
}
