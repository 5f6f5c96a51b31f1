package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// budgetStep is the share of the retained log one over-budget pass drops:
// small enough to keep most of the window, large enough that a few passes
// free real space once compaction has run.
const budgetStep = 10

// retentionLoop runs RunRetention every RetentionInterval until Close.
// Errors end the pass, not the loop: the next tick retries, and Stats
// reports the last one.
func (s *Store) retentionLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			_, _ = s.RunRetention(context.Background())
		}
	}
}

// RunRetention drops events older than the replay window and, if a disk
// budget is set and exceeded, the oldest tenth of what remains; then it
// compacts the dropped range. It returns how many seqs it dropped. Writes
// continue meanwhile: range deletions commit through Pebble's pipeline
// without the writer lock. The background goroutine calls it; operators
// and tests may too.
func (s *Store) RunRetention(ctx context.Context) (dropped uint64, err error) {
	s.retMu.Lock()
	defer s.retMu.Unlock()
	if s.closed.Load() {
		return 0, ErrClosed
	}
	if f := s.fatal.Load(); f != nil {
		return 0, fmt.Errorf("%w: %w", ErrFailed, f)
	}
	oldest := Seq(s.oldest.Load())
	newest := Seq(s.newest.Load())
	cutoffSec := s.opts.Now().Add(-s.opts.ReplayWindow).Unix()
	keep, found, err := s.SeqAtTime(time.Unix(cutoffSec, 0))
	if err != nil {
		return 0, err
	}
	if !found {
		keep = newest + 1
	}
	if s.opts.DiskBudgetBytes > 0 && s.db.Metrics().DiskSpaceUsage() > s.opts.DiskBudgetBytes {
		if over := oldest + max((newest+1-oldest)/budgetStep, 1); over > keep && keep <= newest {
			keep = min(over, newest+1)
		}
	}
	if keep <= oldest {
		return 0, nil
	}
	from := appendEventKey(nil, oldest)
	to := appendEventKey(nil, keep)
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.DeleteRange(from, to, nil)
	// Time-index entries point at first seqs; drop those whose seq is gone.
	if err := s.dropTimeIndexBelow(b, keep); err != nil {
		return 0, err
	}
	err = b.Commit(pebble.NoSync)
	if f := s.fatal.Load(); f != nil && err == nil {
		err = f
	}
	if err != nil {
		return 0, fmt.Errorf("store: retention delete: %w", err)
	}
	s.oldest.Store(uint64(keep))
	s.retained.Add(int64(keep - oldest))
	if err := s.db.Compact(ctx, from, to, false); err != nil {
		return uint64(keep - oldest), fmt.Errorf("store: retention compact: %w", err)
	}
	return uint64(keep - oldest), nil
}

// dropTimeIndexBelow adds to b the deletion of the time-index entries that
// point below keep. SeqAtTime for a second whose entry was dropped answers
// with the next retained entry.
func (s *Store) dropTimeIndexBelow(b *pebble.Batch, keep Seq) error {
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixTime}, UpperBound: []byte{prefixTime + 1},
	})
	if err != nil {
		return err
	}
	defer it.Close()
	var end []byte
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if len(v) != 8 {
			return fmt.Errorf("%w: time index value %x", ErrCorrupt, v)
		}
		if Seq(binary.BigEndian.Uint64(v)) >= keep {
			end = append(end[:0], it.Key()...)
			break
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	if end == nil {
		end = []byte{prefixTime + 1}
	}
	return b.DeleteRange([]byte{prefixTime}, end, nil)
}
