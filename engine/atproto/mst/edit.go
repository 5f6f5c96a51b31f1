package mst

import (
	"slices"

	"github.com/atrelay/relay/engine/atproto/cid"
)

// This file holds the tree operations of digest §12.3, shared by Tree and
// Inverter. Every step that must look inside a node checks loaded first:
// on a partial tree an opaque stub fails the operation with
// ErrMissingBlock. On error the tree is left part-way modified; callers
// discard it (Inverter) or never see the error (Tree has no stubs).

// get returns the value stored at key (height h), or nil.
func (f *forest) get(key []byte, h int) (cid.CID, error) {
	n := f.root
	if n == nil || h > n.level {
		return nil, nil
	}
	for n != nil {
		if !n.loaded {
			return nil, ErrMissingBlock
		}
		i, found := search(n.ents, key)
		if n.level == h {
			if found {
				return n.ents[i].val, nil
			}
			return nil, nil
		}
		n = n.gap(i)
	}
	return nil, nil
}

// put stores val at key (height h) and returns the value it displaced.
func (f *forest) put(key []byte, val cid.CID, h int) (cid.CID, error) {
	if f.root == nil {
		n, err := f.newNode(h)
		if err != nil {
			return nil, err
		}
		n.ents = append(n.ents, entry{key: key, val: val})
		f.root = n
		return nil, nil
	}
	for f.root.level < h {
		p, err := f.newNode(f.root.level + 1)
		if err != nil {
			return nil, err
		}
		p.left = f.root
		f.root = p
	}
	return f.putAt(f.root, key, val, h)
}

// putAt inserts below n, which is on a level ≥ h.
func (f *forest) putAt(n *node, key []byte, val cid.CID, h int) (cid.CID, error) {
	if !n.loaded {
		return nil, ErrMissingBlock
	}
	i, found := search(n.ents, key)
	if n.level == h {
		if found {
			old := n.ents[i].val
			if !old.Equal(val) {
				n.ents[i].val = val
				f.dirty(n)
			}
			return old, nil
		}
		var l, r *node
		if sub := n.gap(i); sub != nil {
			var err error
			if l, r, err = f.split(sub, key); err != nil {
				return nil, err
			}
		}
		n.ents = slices.Insert(n.ents, i, entry{key: key, val: val, right: r})
		n.setGap(i, l)
		f.dirty(n)
		return nil, nil
	}
	sub := n.gap(i)
	if sub == nil {
		var err error
		if sub, err = f.newNode(n.level - 1); err != nil {
			return nil, err
		}
		n.setGap(i, sub)
	}
	old, err := f.putAt(sub, key, val, h)
	if err != nil {
		return nil, err
	}
	if !sub.hashed {
		f.dirty(n)
	}
	return old, nil
}

// split cuts the subtree n by key (which n does not hold: it belongs
// higher up) into the parts below and above key. Empty parts are nil.
func (f *forest) split(n *node, key []byte) (l, r *node, err error) {
	if !n.loaded {
		return nil, nil, ErrMissingBlock
	}
	i, _ := search(n.ents, key)
	var sl, sr *node
	if sub := n.gap(i); sub != nil {
		if sl, sr, err = f.split(sub, key); err != nil {
			return nil, nil, err
		}
	}
	if r, err = f.newNode(n.level); err != nil {
		return nil, nil, err
	}
	r.ents = append(r.ents, n.ents[i:]...)
	r.left = sr
	clear(n.ents[i:])
	n.ents = n.ents[:i]
	n.setGap(i, sl)
	f.dirty(n)
	l = n
	if l.empty() {
		l = nil
	}
	if r.empty() {
		r = nil
	}
	return l, r, nil
}

// remove deletes key (height h) and returns its value, or nil if absent.
func (f *forest) remove(key []byte, h int) (cid.CID, error) {
	if f.root == nil || h > f.root.level {
		return nil, nil
	}
	old, err := f.removeAt(f.root, key, h)
	if err != nil || old == nil {
		return old, err
	}
	// Trim: an entry-less root that only points down is replaced by its
	// child. A stub child stays opaque and becomes the root as is.
	for f.root != nil && f.root.loaded && len(f.root.ents) == 0 {
		f.forget(f.root)
		f.root = f.root.left
	}
	return old, nil
}

// removeAt deletes key below n, which is on a level ≥ h.
func (f *forest) removeAt(n *node, key []byte, h int) (cid.CID, error) {
	if !n.loaded {
		return nil, ErrMissingBlock
	}
	i, found := search(n.ents, key)
	if n.level == h {
		if !found {
			return nil, nil
		}
		old := n.ents[i].val
		m, err := f.merge(n.gap(i), n.ents[i].right)
		if err != nil {
			return nil, err
		}
		n.ents = slices.Delete(n.ents, i, i+1)
		n.setGap(i, m)
		f.dirty(n)
		return old, nil
	}
	sub := n.gap(i)
	if sub == nil {
		return nil, nil
	}
	old, err := f.removeAt(sub, key, h)
	if err != nil || old == nil {
		return old, err
	}
	if sub.empty() {
		f.forget(sub)
		n.setGap(i, nil)
	}
	f.dirty(n)
	return old, nil
}

// merge joins two adjacent subtrees of the same level (either may be nil)
// into one, zipping the seam where l's last gap meets r's first.
func (f *forest) merge(l, r *node) (*node, error) {
	if l == nil {
		return r, nil
	}
	if r == nil {
		return l, nil
	}
	if !l.loaded || !r.loaded {
		return nil, ErrMissingBlock
	}
	last := len(l.ents)
	m, err := f.merge(l.gap(last), r.left)
	if err != nil {
		return nil, err
	}
	l.setGap(last, m)
	l.ents = append(l.ents, r.ents...)
	f.forget(r)
	f.dirty(l)
	return l, nil
}
