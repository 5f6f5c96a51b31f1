package mst

import (
	"bytes"
	"iter"

	"github.com/atrelay/relay/engine/atproto/cid"
)

// Tree is a complete in-memory MST for producers (the synthetic PDS
// fleet). Changes are grouped into batches, one per commit: Commit hashes
// only the nodes the batch changed (node CIDs are cached) and lists the
// node blocks the commit's CAR slice must carry. Single goroutine.
type Tree struct {
	f     forest
	count int
	// changed holds copies of the keys created or deleted in the current
	// batch; their paths and neighbours go into the proof.
	changed [][]byte
	// marks counts proof collections; node.mark == marks means the node
	// is already listed in the current one.
	marks uint32
}

// NewTree returns an empty tree. Its first Commit lists every node.
func NewTree() *Tree {
	return &Tree{f: forest{gen: 1, old: map[[cid.BlessedLen]byte]struct{}{}}}
}

// Len returns the number of keys.
func (t *Tree) Len() int { return t.count }

// Get returns the value stored at key, or nil. The result aliases the tree
// and is valid until key is next changed.
func (t *Tree) Get(key []byte) cid.CID {
	v, _ := t.f.get(key, Height(key)) // a complete tree has no stubs
	return v
}

// Insert stores val at key and returns the value it replaced (nil for a
// new key). key and val are copied.
func (t *Tree) Insert(key []byte, val cid.CID) (cid.CID, error) {
	if !ValidKey(key) {
		return nil, ErrKeyInvalid
	}
	if len(val) == 0 {
		return nil, ErrValueMissing
	}
	if _, err := cid.ParseExact(val); err != nil {
		return nil, ErrBadCID
	}
	k := bytes.Clone(key)
	old, err := t.f.put(k, val.Clone(), Height(k))
	if err != nil {
		return nil, err
	}
	if old == nil {
		t.count++
		t.changed = append(t.changed, k)
	}
	return old, nil
}

// Delete removes key and returns its value, or nil if it was absent.
func (t *Tree) Delete(key []byte) (cid.CID, error) {
	old, err := t.f.remove(key, Height(key))
	if err != nil {
		return nil, err
	}
	if old != nil {
		t.count--
		t.changed = append(t.changed, bytes.Clone(key))
	}
	return old, nil
}

// Root returns the current root CID in new memory, hashing changed nodes.
func (t *Tree) Root() cid.CID {
	c := t.f.rootCID()
	return cid.CID(c[:]).Clone()
}

// All iterates over the (key, value) pairs in key order. The slices alias
// the tree; the tree must not change during iteration.
func (t *Tree) All() iter.Seq2[[]byte, cid.CID] {
	return func(yield func([]byte, cid.CID) bool) {
		walkNode(t.f.root, yield)
	}
}

func walkNode(n *node, yield func([]byte, cid.CID) bool) bool {
	if n == nil {
		return true
	}
	for i := 0; i <= len(n.ents); i++ {
		if !walkNode(n.gap(i), yield) {
			return false
		}
		if i < len(n.ents) && !yield(n.ents[i].key, n.ents[i].val) {
			return false
		}
	}
	return true
}

// Commit ends the current batch. It returns the new root CID (new memory)
// and calls emit, root first, once for each MST node block the batch's
// #commit CAR slice must carry (digest §12.4): every node that is new
// since the previous Commit, plus every node on the root-to-key path of
// each created or deleted key and of the keys just before and after it.
// c and block are valid only during emit. emit may be nil.
func (t *Tree) Commit(emit func(c cid.CID, block []byte)) cid.CID {
	root := t.Root()
	if emit != nil {
		t.marks++
		var list []*node
		list = t.collectNew(t.f.root, list)
		for _, k := range t.changed {
			list = t.collectPath(k, list)
			if p := pred(t.f.root, k); p != nil {
				list = t.collectPath(p, list)
			}
			if s := succ(t.f.root, k); s != nil {
				list = t.collectPath(s, list)
			}
		}
		if t.f.root == nil {
			emit(cid.CID(emptyRootCID), []byte(emptyNode))
		}
		for _, n := range list {
			t.f.enc = t.f.encode(t.f.enc[:0], n)
			emit(n.cid[:], t.f.enc)
		}
	}
	// A new batch: everything hashed so far counts as committed.
	t.f.gen++
	clear(t.f.old)
	clear(t.changed)
	t.changed = t.changed[:0]
	return root
}

// collectNew appends the nodes hashed in the current batch whose CIDs were not in
// the committed tree. Unchanged nodes end the descent: a change below a
// node always re-hashes it.
func (t *Tree) collectNew(n *node, list []*node) []*node {
	if n == nil || n.gen != t.f.gen {
		return list
	}
	if _, old := t.f.old[n.cid]; !old && n.mark != t.marks {
		n.mark = t.marks
		list = append(list, n)
	}
	for i := 0; i <= len(n.ents); i++ {
		list = t.collectNew(n.gap(i), list)
	}
	return list
}

// collectPath appends the nodes visited when searching for key.
func (t *Tree) collectPath(key []byte, list []*node) []*node {
	for n := t.f.root; n != nil; {
		if n.mark != t.marks {
			n.mark = t.marks
			list = append(list, n)
		}
		i, found := search(n.ents, key)
		if found {
			break
		}
		n = n.gap(i)
	}
	return list
}

// pred returns the largest key below key in the subtree n, or nil.
func pred(n *node, key []byte) []byte {
	if n == nil {
		return nil
	}
	i, _ := search(n.ents, key)
	if p := pred(n.gap(i), key); p != nil {
		return p
	}
	if i > 0 {
		return n.ents[i-1].key
	}
	return nil
}

// succ returns the smallest key above key in the subtree n, or nil.
func succ(n *node, key []byte) []byte {
	if n == nil {
		return nil
	}
	j, found := search(n.ents, key)
	if found {
		j++
	}
	if s := succ(n.gap(j), key); s != nil {
		return s
	}
	if j < len(n.ents) {
		return n.ents[j].key
	}
	return nil
}

// BuildSorted builds a tree from pairs in strictly increasing key order
// (ErrUnsorted otherwise). The result counts as committed: its first
// Commit lists only what changed after the build.
func BuildSorted(pairs iter.Seq2[[]byte, cid.CID]) (*Tree, error) {
	t := NewTree()
	var prev []byte
	for k, v := range pairs {
		if prev != nil && bytes.Compare(k, prev) <= 0 {
			return nil, ErrUnsorted
		}
		if _, err := t.Insert(k, v); err != nil {
			return nil, err
		}
		prev = t.changed[len(t.changed)-1]
	}
	t.Commit(nil)
	return t, nil
}

// LoadTree verifies the complete tree rooted at root (see Walker) and
// returns it as a committed Tree.
func LoadTree(get BlockGetter, root cid.CID) (*Tree, error) {
	t := NewTree()
	var w Walker
	err := w.Walk(get, root, func(k []byte, v cid.CID) error {
		_, err := t.Insert(k, v)
		return err
	})
	if err != nil {
		return nil, err
	}
	t.Commit(nil)
	return t, nil
}
