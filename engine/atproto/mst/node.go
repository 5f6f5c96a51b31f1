package mst

import (
	"bytes"
	"crypto/sha256"

	"github.com/atrelay/relay/engine/atproto/cid"
)

// node is one node of an in-memory (possibly partial) tree.
//
// A node's gaps: gap 0 is left (keys below ents[0]), gap i ≥ 1 is
// ents[i-1].right (keys between ents[i-1] and ents[i]). Owned by the forest
// that created it; never shared between forests.
type node struct {
	// level is the layer of the node: the height of every key it holds.
	level int
	left  *node
	ents  []entry
	// cid is the CID of the current contents when hashed is true.
	cid [cid.BlessedLen]byte
	// hashed: cid is current. A stub is hashed and not loaded.
	hashed bool
	// loaded: ents/left are known. False only for opaque stubs.
	loaded bool
	// gen is the forest generation in which cid was computed (Tree's
	// batch tracking; unused by Inverter).
	gen uint32
	// mark is the generation in which the node was last collected for a
	// proof, to de-duplicate without a set.
	mark uint32
}

// entry is one key/value pair and the subtree right of it. Owned by the
// node whose ents holds it; key and val may alias the op list or block
// bytes of the current Invert call (Inverter) or are owned copies (Tree).
type entry struct {
	key   []byte
	val   cid.CID
	right *node
}

// gap returns the subtree in gap i (see node).
func (n *node) gap(i int) *node {
	if i == 0 {
		return n.left
	}
	return n.ents[i-1].right
}

// setGap stores c as the subtree of gap i.
func (n *node) setGap(i int, c *node) {
	if i == 0 {
		n.left = c
	} else {
		n.ents[i-1].right = c
	}
}

// empty reports whether a loaded node holds nothing at all.
func (n *node) empty() bool { return n.loaded && len(n.ents) == 0 && n.left == nil }

// search returns the index of the first entry whose key is ≥ key and
// whether it equals key.
func search(ents []entry, key []byte) (int, bool) {
	lo, hi := 0, len(ents)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bytes.Compare(ents[m].key, key) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(ents) && bytes.Equal(ents[lo].key, key)
}

// forest holds one tree's root and the machinery shared by Tree and
// Inverter: node allocation, change tracking and the encode buffer.
// Single goroutine; owned by the Tree or Inverter that embeds it.
type forest struct {
	root *node // nil is the empty tree
	// pool/used: reusable nodes (Inverter). With reuse false every node is
	// fresh and left to the garbage collector (Tree).
	reuse bool
	pool  []*node
	used  int
	// gen advances at each Tree commit; see node.gen.
	gen uint32
	// old collects the committed CIDs of nodes modified or dropped in the
	// current batch (Tree only; nil for Inverter).
	old map[[cid.BlessedLen]byte]struct{}
	enc []byte // encoding scratch
	// nodeData is decode scratch for loaders.
	nd NodeData
}

// newNode returns an empty, loaded, unhashed node on the given level.
func (f *forest) newNode(level int) (*node, error) {
	var n *node
	if !f.reuse {
		n = &node{}
	} else {
		if f.used >= MaxNodes {
			return nil, ErrTooManyNodes
		}
		if f.used < len(f.pool) {
			n = f.pool[f.used]
			ents := n.ents
			clear(ents)
			*n = node{ents: ents[:0]}
		} else {
			n = &node{}
			f.pool = append(f.pool, n)
		}
		f.used++
	}
	n.level = level
	n.loaded = true
	return n, nil
}

// resetPool makes every pooled node available again (Inverter).
func (f *forest) resetPool() {
	f.used = 0
	f.root = nil
}

// dirty marks n changed, remembering a committed CID it loses.
func (f *forest) dirty(n *node) {
	if n.hashed {
		f.forget(n)
		n.hashed = false
	}
}

// forget records that the committed version of n leaves the tree.
func (f *forest) forget(n *node) {
	if f.old != nil && n.hashed && n.gen != f.gen {
		f.old[n.cid] = struct{}{}
	}
}

// hash computes the CIDs of n and every unhashed node below it.
func (f *forest) hash(n *node) {
	if n.hashed {
		return
	}
	if n.left != nil {
		f.hash(n.left)
	}
	for i := range n.ents {
		if r := n.ents[i].right; r != nil {
			f.hash(r)
		}
	}
	f.enc = f.encode(f.enc[:0], n)
	sum := sha256.Sum256(f.enc)
	n.cid[0], n.cid[1], n.cid[2], n.cid[3] = 1, cid.CodecDagCBOR, cid.HashSHA256, 32
	copy(n.cid[4:], sum[:])
	n.hashed = true
	n.gen = f.gen
}

// encode appends the block of n, whose children must be hashed.
func (f *forest) encode(dst []byte, n *node) []byte {
	dst = append(dst, 0xa2, 0x61, 'e')
	dst = appendHead(dst, majorArray, uint64(len(n.ents)))
	var prev []byte
	for i := range n.ents {
		e := &n.ents[i]
		dst = appendEntry(dst, prev, e.key, e.val, childCID(e.right))
		prev = e.key
	}
	dst = append(dst, 0x61, 'l')
	return appendLink(dst, childCID(n.left))
}

// childCID returns the CID of a hashed child, or nil for no child.
func childCID(c *node) cid.CID {
	if c == nil {
		return nil
	}
	return c.cid[:]
}

// rootCID hashes the tree and returns its root CID (the constant
// empty-tree CID when the tree is empty).
func (f *forest) rootCID() (c [cid.BlessedLen]byte) {
	if f.root == nil {
		copy(c[:], emptyRootCID)
		return c
	}
	f.hash(f.root)
	return f.root.cid
}
