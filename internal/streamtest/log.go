package streamtest

import (
	"context"
	"sort"
	"sync"
)

// Log is an in-memory event log with the store's replay semantics: events
// in increasing seq, each with its commit time, and a replay that re-finds
// its position on every event, like a store iterator that sees trims, so
// a trim under a replaying reader shows up as a jump in seq. Safe for
// concurrent use; the zero value is an empty log.
type Log struct {
	mu     sync.Mutex
	seqs   []uint64
	ms     []int64
	frames [][]byte
}

// Append adds an event committed at unixMilli; seq must be above every seq
// in the log. The log keeps frame.
func (l *Log) Append(seq uint64, unixMilli int64, frame []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seqs = append(l.seqs, seq)
	l.ms = append(l.ms, unixMilli)
	l.frames = append(l.frames, frame)
}

// TrimBefore drops every event with seq < oldest, as retention does.
func (l *Log) TrimBefore(oldest uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := sort.Search(len(l.seqs), func(i int) bool { return l.seqs[i] >= oldest })
	l.seqs = append([]uint64(nil), l.seqs[i:]...)
	l.ms = append([]int64(nil), l.ms[i:]...)
	l.frames = append([][]byte(nil), l.frames[i:]...)
}

// ReplayTimed calls fn for each event with seq > after, in order, with its
// commit time, until fn fails (ReplayTimed returns its error), ctx ends or
// the log does.
func (l *Log) ReplayTimed(ctx context.Context, after uint64, fn func(seq uint64, unixMilli int64, frame []byte) error) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		l.mu.Lock()
		i := sort.Search(len(l.seqs), func(i int) bool { return l.seqs[i] > after })
		if i == len(l.seqs) {
			l.mu.Unlock()
			return nil
		}
		seq, ms, b := l.seqs[i], l.ms[i], l.frames[i]
		l.mu.Unlock()
		if err := fn(seq, ms, b); err != nil {
			return err
		}
		after = seq
	}
}

// Replay is ReplayTimed without the commit times.
func (l *Log) Replay(ctx context.Context, after uint64, fn func(seq uint64, frame []byte) error) error {
	return l.ReplayTimed(ctx, after, func(seq uint64, _ int64, b []byte) error { return fn(seq, b) })
}

// OldestSeq returns the oldest seq; false when the log is empty.
func (l *Log) OldestSeq() (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seqs) == 0 {
		return 0, false
	}
	return l.seqs[0], true
}

// NewestSeq returns the newest seq; false when the log is empty.
func (l *Log) NewestSeq() (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seqs) == 0 {
		return 0, false
	}
	return l.seqs[len(l.seqs)-1], true
}
