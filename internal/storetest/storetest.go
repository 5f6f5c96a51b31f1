// Package storetest writes events into a store.Store as the relay's
// sequencer does (Stage, the next seqs for the logged events, Commit), for
// the tests of packages that read what a relay logged, and opens the small
// throwaway store and test hosts those tests share. It is a test helper:
// it allocates freely and is never imported by production code.
package storetest

import "github.com/atrelay/relay/store"

// Append writes events as one group commit: Stage decides them, each
// logged event gets the next seq and the frame frame(i, seq) returns for
// it (i is its index in events), and Commit writes them. It returns each
// event's seq, store.SeqNone for an event dropped as stale.
func Append(st *store.Store, events []store.Event, frame func(i int, seq store.Seq) []byte) ([]store.Seq, error) {
	staged, outcomes, err := st.Stage(events, nil)
	if err != nil {
		return nil, err
	}
	seqs := make([]store.Seq, len(events))
	var rows []store.SeqEvent
	next := st.NewestSeq() + 1
	for i, o := range outcomes {
		if o.Logged() {
			seqs[i] = next + store.Seq(len(rows))
			rows = append(rows, store.SeqEvent{Seq: seqs[i], Kind: events[i].Kind, DID: events[i].DID, Frame: frame(i, seqs[i])})
		}
	}
	if err := staged.Commit(rows); err != nil {
		return nil, err
	}
	return seqs, nil
}
