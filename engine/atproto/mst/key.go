package mst

import (
	"crypto/sha256"
	"errors"
	"math/bits"
)

// Limits enforced on decoded nodes, keys and commits. They are fixed by
// the protocol (or, for MaxNodes, implied by its 2 MB CAR cap) rather
// than tunables: a node or commit that exceeds one is invalid.
const (
	// MaxKeyLen is the longest MST key in bytes (the reference limit).
	MaxKeyLen = 1024
	// MaxEntries bounds the entries of one node (key-mining defence, digest
	// §6.2). Honest nodes hold a handful.
	MaxEntries = 1000
	// MaxOps bounds the ops of one commit (lexicon limit).
	MaxOps = 200
	// MaxNodes bounds the nodes one Invert call may load or create. A 2 MB
	// CAR slice of minimal nodes plus the bridges 200 ops can create stays
	// well below it.
	MaxNodes = 1 << 16
)

// Errors about keys and nodes. Each is a distinct failure reason; callers
// wrap or count them with errors.Is.
var (
	ErrKeyInvalid     = errors.New("mst: invalid key (empty, too long or not a repo path)")
	ErrNodeEncoding   = errors.New("mst: node is not canonical DAG-CBOR of the node shape")
	ErrTooManyEntries = errors.New("mst: node has more than MaxEntries entries")
	ErrBadPrefix      = errors.New("mst: entry prefix length is not the exact shared prefix")
	ErrKeyOrder       = errors.New("mst: keys not strictly increasing")
	ErrKeyHeight      = errors.New("mst: key height differs from the node's layer")
	ErrKeyRange       = errors.New("mst: subtree key outside the gap bounded by its parent")
	ErrLinkNotBlessed = errors.New("mst: node link is not a blessed dag-cbor CID")
	ErrBadCID         = errors.New("mst: malformed CID in node")
	ErrChildBelowZero = errors.New("mst: node on layer 0 links to a subtree")
	ErrEmptyNode      = errors.New("mst: non-root node with no entries and no subtree")
	ErrRootNotTrimmed = errors.New("mst: root has no entries but points down")
	ErrBlockHash      = errors.New("mst: block does not hash to its CID")
	ErrMissingBlock   = errors.New("mst: needed block missing")
	ErrTooManyNodes   = errors.New("mst: more than MaxNodes nodes")
	ErrValueMissing   = errors.New("mst: value CID missing")
	ErrUnsorted       = errors.New("mst: input pairs not strictly increasing")
)

// Height returns the layer of key: leading zero bits of SHA-256(key) / 2.
func Height(key []byte) int {
	sum := sha256.Sum256(key)
	z := 0
	for _, b := range sum {
		if b != 0 {
			z += bits.LeadingZeros8(b)
			break
		}
		z += 8
	}
	return z / 2
}

// ValidKey reports whether key may be stored in an MST: 1..MaxKeyLen bytes
// of the form "<collection>/<record-key>" with exactly one '/', both halves
// non-empty, and only the repo-path alphabet A-Z a-z 0-9 . - _ : ~ besides
// the slash. Full NSID and record-key grammar is the syntax package's job;
// this check keeps hostile bytes out of the tree.
func ValidKey(key []byte) bool {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return false
	}
	slash := -1
	for i, c := range key {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '-', c == '_', c == ':', c == '~':
		case c == '/':
			if slash >= 0 {
				return false
			}
			slash = i
		default:
			return false
		}
	}
	if slash <= 0 || slash == len(key)-1 {
		return false
	}
	rk := key[slash+1:]
	return !(len(rk) == 1 && rk[0] == '.') && !(len(rk) == 2 && rk[0] == '.' && rk[1] == '.')
}

// commonPrefix returns the number of leading bytes a and b share.
func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	a, b = a[:n], b[:n]
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
