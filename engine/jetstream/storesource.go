package jetstream

import (
	"context"
	"time"

	"github.com/atrelay/relay/store"
)

// StoreSource adapts the relay's store to Source: the event log with each
// event's commit time (Iterator.TimeMilli) and the one-second time index
// (SeqAtTime). Like the firehose's replay, it skips the events of accounts
// taken down after the fact.
type StoreSource struct{ Store *store.Store }

// ReplayTimed implements Source.
func (s StoreSource) ReplayTimed(ctx context.Context, after uint64, fn func(seq uint64, unixMilli int64, frame []byte) error) error {
	it, err := s.Store.NewIterator(store.Seq(after))
	if err != nil {
		return err
	}
	defer it.Close()
	for it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(uint64(it.Seq()), it.TimeMilli(), it.Frame()); err != nil {
			return err
		}
	}
	return it.Err()
}

// OldestSeq implements Source.
func (s StoreSource) OldestSeq() (uint64, bool) {
	q := s.Store.OldestSeq()
	return uint64(q), q != store.SeqNone
}

// NewestSeq implements Source.
func (s StoreSource) NewestSeq() (uint64, bool) {
	if s.Store.OldestSeq() == store.SeqNone {
		return 0, false
	}
	return uint64(s.Store.NewestSeq()), true
}

// SeqAtTime implements Source.
func (s StoreSource) SeqAtTime(t time.Time) (uint64, bool, error) {
	q, ok, err := s.Store.SeqAtTime(t)
	return uint64(q), ok, err
}
