package store

import "context"

// FirehoseLog is the store read as the firehose's event log
// (firehose.Log): the replay reader of relay serve's and relay splitter's
// subscribeRepos. A plain value over the store; safe for concurrent use.
type FirehoseLog struct{ St *Store }

// Replay implements firehose.Log: every event with seq > after, in order.
func (l FirehoseLog) Replay(ctx context.Context, after uint64, fn func(seq uint64, frame []byte) error) error {
	it, err := l.St.NewIterator(Seq(after))
	if err != nil {
		return err
	}
	defer it.Close()
	for it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(uint64(it.Seq()), it.Frame()); err != nil {
			return err
		}
	}
	return it.Err()
}

// OldestSeq implements firehose.Log.
func (l FirehoseLog) OldestSeq() (uint64, bool) {
	s := l.St.OldestSeq()
	return uint64(s), s != SeqNone
}

// NewestSeq implements firehose.Log. A log that holds no event can still
// have a newest seq (every event aged out of the window, or the seq was
// moved forward for a relay switch): cursors up to it are not in the
// future.
func (l FirehoseLog) NewestSeq() (uint64, bool) {
	n := l.St.NewestSeq()
	return uint64(n), n != SeqNone
}
