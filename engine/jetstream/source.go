package jetstream

import (
	"context"
	"time"
)

// Source is the relay's durable event log as the endpoint reads it: the
// same log subscribeRepos replays from, seen with each event's commit time.
// It must be safe for concurrent use (the pump and every replaying
// subscriber read it at once).
//
// The relay's store satisfies it through a thin adapter (store.Iterator
// gives Seq, TimeMilli and Frame; store.SeqAtTime is the time index).
type Source interface {
	// ReplayTimed calls fn for each stored event with seq > after, in seq
	// order, with the event's commit time in Unix milliseconds, until fn
	// returns an error (which ReplayTimed returns) or the end of the log.
	// Commit times never decrease with seq. frame is a canonical
	// subscribeRepos frame, valid only during the call.
	ReplayTimed(ctx context.Context, after uint64, fn func(seq uint64, unixMilli int64, frame []byte) error) error
	// OldestSeq returns the oldest retained seq; false when the log is
	// empty.
	OldestSeq() (uint64, bool)
	// NewestSeq returns the newest durable seq; false when the log is
	// empty.
	NewestSeq() (uint64, bool)
	// SeqAtTime returns the first seq committed at or after the start of
	// the Unix second holding t (the store's one-second time index); false
	// when nothing was committed since. For a second the log's retention
	// has cut into, it may answer with a later second's first seq.
	SeqAtTime(t time.Time) (seq uint64, ok bool, err error)
}
