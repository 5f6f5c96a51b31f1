package repo

import (
	"time"

	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/dagcbor"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/atproto/mst"
	"github.com/atrelay/relay/engine/atproto/syntax"
)

// SyncCommit returns the #sync event for the current state: the last
// commit's rev and a CAR holding only its block (Seq 0: the caller sets it).
func (r *Repo) SyncCommit() (*event.Sync, error) {
	if r.head.commit == nil {
		return nil, ErrNoCommit
	}
	blocks := car.AppendHeader(nil, r.head.commit)
	blocks = car.AppendBlock(blocks, r.head.commit, r.head.block)
	return &event.Sync{
		DID:    append([]byte(nil), r.did...),
		Rev:    append([]byte(nil), r.head.rev...),
		Blocks: blocks,
		Time:   syntax.AppendDatetime(nil, r.now()),
	}, nil
}

// ExportCAR returns the whole repository as getRepo serves it: root the
// last commit, then the commit block, every MST node and every record
// block, each once.
func (r *Repo) ExportCAR() ([]byte, error) {
	if r.head.commit == nil {
		return nil, ErrNoCommit
	}
	if r.forget {
		return nil, ErrForgotten
	}
	out := car.AppendHeader(nil, r.head.commit)
	out = car.AppendBlock(out, r.head.commit, r.head.block)
	// A fresh tree's first Commit lists every node; the live tree only
	// remembers what changed since its last commit.
	full := mst.NewTree()
	for k, v := range r.tree.All() {
		if _, err := full.Insert(k, v); err != nil {
			return nil, err
		}
	}
	full.Commit(func(c cid.CID, block []byte) {
		out = car.AppendBlock(out, c, block)
	})
	seen := make(map[string]bool, len(r.records))
	for _, v := range r.tree.All() {
		if seen[string(v)] {
			continue
		}
		seen[string(v)] = true
		out = car.AppendBlock(out, v, r.records[string(v)].data)
	}
	return out, nil
}

// PostRecord returns a small realistic app.bsky.feed.post record,
// {"$type", "text", "createdAt"}, in canonical DAG-CBOR.
func PostRecord(text string, createdAt time.Time) []byte {
	// Canonical order sorts keys by length first: text, $type, createdAt.
	b := dagcbor.AppendMapHeader(nil, 3)
	b = dagcbor.AppendText(b, "text")
	b = dagcbor.AppendText(b, text)
	b = dagcbor.AppendText(b, "$type")
	b = dagcbor.AppendText(b, "app.bsky.feed.post")
	b = dagcbor.AppendText(b, "createdAt")
	return dagcbor.AppendText(b, syntax.AppendDatetime(nil, createdAt))
}
