package mst

import (
	"bytes"
	"crypto/sha256"

	"github.com/atrelay/relay/engine/atproto/cid"
)

// BlockGetter returns the block stored under c, or false when absent. The
// returned bytes must stay unchanged for the duration of the call that
// received the getter; values in the tree alias them.
type BlockGetter func(c cid.CID) ([]byte, bool)

// checkNode validates a decoded node against its position: level (its
// layer), the exclusive key bounds lo/hi of its gap (nil = unbounded) and
// whether it is the root. The codec has already checked everything local.
// A root's level must come from rootLevel: its first key then has that
// height by construction, so only the others are hashed.
func checkNode(nd *NodeData, level int, lo, hi []byte, isRoot bool) error {
	if len(nd.Entries) == 0 {
		switch {
		case nd.Left == nil && !isRoot:
			return ErrEmptyNode
		case nd.Left != nil && isRoot:
			return ErrRootNotTrimmed
		}
	} else {
		if lo != nil && bytes.Compare(nd.Entries[0].Key, lo) <= 0 {
			return ErrKeyRange
		}
		if hi != nil && bytes.Compare(nd.Entries[len(nd.Entries)-1].Key, hi) >= 0 {
			return ErrKeyRange
		}
	}
	if level == 0 {
		if nd.Left != nil {
			return ErrChildBelowZero
		}
		for i := range nd.Entries {
			if nd.Entries[i].Right != nil {
				return ErrChildBelowZero
			}
		}
	}
	first := 0
	if isRoot {
		first = 1
	}
	for i := first; i < len(nd.Entries); i++ {
		if Height(nd.Entries[i].Key) != level {
			return ErrKeyHeight
		}
	}
	return nil
}

// verifyBlock reports whether b hashes to the blessed CID c.
func verifyBlock(c []byte, b []byte) bool {
	sum := sha256.Sum256(b)
	return len(c) == cid.BlessedLen && bytes.Equal(c[4:], sum[:])
}

// rootLevel returns the layer of a decoded root node (0 when empty).
func rootLevel(nd *NodeData) int {
	if len(nd.Entries) == 0 {
		return 0
	}
	return Height(nd.Entries[0].Key)
}

// loadPartial replaces the tree with the partial tree rooted at data:
// every reachable node whose block get returns is decoded and checked, the
// others stay stubs. keys receives the decoded keys and is returned.
// verified says get returns only blocks already checked against the CID
// they are returned for, so hashing them again would be waste.
func (f *forest) loadPartial(get BlockGetter, data cid.CID, keys []byte, verified bool) ([]byte, error) {
	f.root = nil
	if !data.IsBlessedDagCBOR() {
		return keys, ErrLinkNotBlessed
	}
	b, ok := get(data)
	if !ok {
		return keys, ErrMissingBlock
	}
	if !verified && !verifyBlock(data, b) {
		return keys, ErrBlockHash
	}
	var err error
	if keys, err = DecodeNode(&f.nd, b, keys); err != nil {
		return keys, err
	}
	level := rootLevel(&f.nd)
	if err := checkNode(&f.nd, level, nil, nil, true); err != nil {
		return keys, err
	}
	if len(f.nd.Entries) == 0 {
		return keys, nil // the empty tree
	}
	n, err := f.newNode(level)
	if err != nil {
		return keys, err
	}
	copy(n.cid[:], data)
	if err := f.fill(n); err != nil {
		return keys, err
	}
	f.root = n
	return f.loadChildren(get, n, nil, nil, keys, verified)
}

// fill copies the checked f.nd into n, turning links into stubs. n keeps
// the CID it was loaded under and counts as hashed.
func (f *forest) fill(n *node) error {
	for i := range f.nd.Entries {
		e := &f.nd.Entries[i]
		r, err := f.stub(e.Right, n.level-1)
		if err != nil {
			return err
		}
		n.ents = append(n.ents, entry{key: e.Key, val: e.Value, right: r})
	}
	l, err := f.stub(f.nd.Left, n.level-1)
	if err != nil {
		return err
	}
	n.left = l
	n.loaded = true
	n.hashed = true
	return nil
}

// stub returns an opaque node for link c on the given level (nil for nil).
func (f *forest) stub(c cid.CID, level int) (*node, error) {
	if c == nil {
		return nil, nil
	}
	s, err := f.newNode(level)
	if err != nil {
		return nil, err
	}
	copy(s.cid[:], c)
	s.loaded = false
	s.hashed = true
	return s, nil
}

// loadChildren loads the stubs below n whose blocks are available
// (verified as for loadPartial).
func (f *forest) loadChildren(get BlockGetter, n *node, lo, hi []byte, keys []byte, verified bool) ([]byte, error) {
	for i := 0; i <= len(n.ents); i++ {
		c := n.gap(i)
		if c == nil {
			continue
		}
		clo, chi := lo, hi
		if i > 0 {
			clo = n.ents[i-1].key
		}
		if i < len(n.ents) {
			chi = n.ents[i].key
		}
		b, ok := get(c.cid[:])
		if !ok {
			continue
		}
		if !verified && !verifyBlock(c.cid[:], b) {
			return keys, ErrBlockHash
		}
		var err error
		if keys, err = DecodeNode(&f.nd, b, keys); err != nil {
			return keys, err
		}
		if err := checkNode(&f.nd, c.level, clo, chi, false); err != nil {
			return keys, err
		}
		if err := f.fill(c); err != nil {
			return keys, err
		}
		if keys, err = f.loadChildren(get, c, clo, chi, keys, verified); err != nil {
			return keys, err
		}
	}
	return keys, nil
}

// Walker verifies complete trees, for resync: every node must be present,
// hash to its CID and pass every check of the package doc. Its scratch is
// reused across calls. Single goroutine.
type Walker struct {
	// levels holds one decode buffer per depth; pointers keep them stable
	// while deeper levels grow the slice. Owned by the walking goroutine.
	levels []*walkLevel
}

// walkLevel is the decode scratch of one depth, owned by its Walker.
type walkLevel struct {
	nd   NodeData
	keys []byte
}

// Walk visits every (key, value) pair of the tree rooted at root in key
// order, verifying each node. key and val are valid only during fn; an
// error from fn stops the walk and is returned.
func (w *Walker) Walk(get BlockGetter, root cid.CID, fn func(key []byte, val cid.CID) error) error {
	if !root.IsBlessedDagCBOR() {
		return ErrLinkNotBlessed
	}
	return w.walk(get, root, -1, 0, nil, nil, fn)
}

// walk visits the subtree c on layer level (-1: root, layer from its keys).
func (w *Walker) walk(get BlockGetter, c cid.CID, level, depth int, lo, hi []byte, fn func([]byte, cid.CID) error) error {
	b, ok := get(c)
	if !ok {
		return ErrMissingBlock
	}
	if !verifyBlock(c, b) {
		return ErrBlockHash
	}
	if depth == len(w.levels) {
		w.levels = append(w.levels, &walkLevel{})
	}
	lv := w.levels[depth]
	var err error
	if lv.keys, err = DecodeNode(&lv.nd, b, lv.keys[:0]); err != nil {
		return err
	}
	nd := &lv.nd
	isRoot := level < 0
	if isRoot {
		level = rootLevel(nd)
	}
	if err := checkNode(nd, level, lo, hi, isRoot); err != nil {
		return err
	}
	for i := 0; i <= len(nd.Entries); i++ {
		child := nd.Left
		clo, chi := lo, hi
		if i > 0 {
			child = nd.Entries[i-1].Right
			clo = nd.Entries[i-1].Key
		}
		if i < len(nd.Entries) {
			chi = nd.Entries[i].Key
		}
		if child != nil {
			if err := w.walk(get, child, level-1, depth+1, clo, chi, fn); err != nil {
				return err
			}
		}
		if i < len(nd.Entries) {
			if err := fn(nd.Entries[i].Key, nd.Entries[i].Value); err != nil {
				return err
			}
		}
	}
	return nil
}
