package diskmodel

import (
	"bytes"
	"fmt"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/store"
)

// batcher collects events for one group commit, written as the relay's
// sequencer writes it: Stage decides, the logged events get the next
// seqs and their frames rewritten with them, Commit writes. Single
// goroutine (Run's). Each queued frame is a copy the event's fields view
// until flush (allocations per event: a measuring tool, not the relay's
// path).
type batcher struct {
	st       *store.Store
	max      int
	dec      event.Decoder
	msg      event.Message
	events   []store.Event
	frames   [][]byte // the capture's frame of events[i]
	outcomes []store.Outcome
	rows     []store.SeqEvent
	next     store.Seq // seq of the next logged event; 0: read the store's
}

func newBatcher(st *store.Store, max int) *batcher {
	return &batcher{st: st, max: max, frames: make([][]byte, 0, max), events: make([]store.Event, 0, max)}
}

// add queues frame as the relay would append it once validated and
// returns 1, or 0 for a frame the relay would not log (no seq: #info,
// error frames). Kinds the relay logs but this model does not know are an
// error rather than a silent undercount.
func (b *batcher) add(frame []byte, host store.HostID, cursor uint64) (int, error) {
	frame = append([]byte(nil), frame...)
	if err := b.dec.Decode(frame, &b.msg); err != nil {
		return 0, fmt.Errorf("diskmodel: frame with upstream seq %d: %w", cursor, err)
	}
	m := &b.msg
	e := store.Event{Host: host, Cursor: cursor}
	switch m.Kind {
	case event.KindCommit:
		e.Kind, e.DID, e.Rev, e.Commit, e.Data = store.KindCommit, m.Commit.Repo, m.Commit.Rev, m.Commit.Commit, m.Commit.Commit
	case event.KindSync:
		e.Kind, e.DID = store.KindSync, m.Sync.DID
	case event.KindIdentity:
		e.Kind, e.DID = store.KindIdentity, m.Identity.DID
	case event.KindAccount:
		e.Kind, e.DID, e.Status = store.KindAccount, m.Account.DID, store.StatusDeactivated
		if m.Account.Active {
			e.Status = store.StatusActive
		}
	case event.KindInfo, event.KindError:
		return 0, nil
	default:
		return 0, fmt.Errorf("diskmodel: frame with upstream seq %d: kind %v not modelled", cursor, m.Kind)
	}
	// The fields may view the decoder's scratch, which the next Decode
	// reuses: the event keeps copies.
	e.DID, e.Rev, e.Commit = bytes.Clone(e.DID), bytes.Clone(e.Rev), bytes.Clone(e.Commit)
	e.Data = e.Commit
	b.frames = append(b.frames, frame)
	b.events = append(b.events, e)
	if len(b.events) == b.max {
		return 1, b.flush()
	}
	return 1, nil
}

// flush appends the queued events in one batch.
func (b *batcher) flush() error {
	if len(b.events) == 0 {
		return nil
	}
	if b.next == 0 {
		b.next = b.st.NewestSeq() + 1
	}
	staged, outcomes, err := b.st.Stage(b.events, b.outcomes[:0])
	if err != nil {
		return err
	}
	b.outcomes, b.rows = outcomes, b.rows[:0]
	for i, o := range outcomes {
		if !o.Logged() {
			continue
		}
		seq := b.next
		out, err := event.RewriteSeq(nil, b.frames[i], int64(seq))
		if err != nil {
			// add decoded the frame, so its seq can be rewritten.
			panic(fmt.Sprintf("BUG: diskmodel: rewriting a decoded frame: %v", err))
		}
		b.rows = append(b.rows, store.SeqEvent{Seq: seq, Kind: b.events[i].Kind, DID: b.events[i].DID, Frame: out})
		b.next++
	}
	err = staged.Commit(b.rows)
	clear(b.events)
	clear(b.frames)
	b.events, b.frames = b.events[:0], b.frames[:0]
	return err
}
