// Package mst implements the Merkle Search Tree of atproto repository
// format v3: the node codec, an in-memory tree for producers, partial-tree
// inversion of #commit messages (sync 1.1) for the relay, and full-tree
// verification for resync.
//
// # Keys and heights
//
// A key is a repo path "<collection>/<record-key>" of at most MaxKeyLen
// bytes. Its height (layer) is the number of leading zero bits of
// SHA-256(key), counted two bits at a time and rounded down:
//
//	key    "blue"
//	sha256 16 47 76 88 …  = 0001 0110 …  → 3 leading zero bits
//	height 3/2 = 1
//
// so on average one key in four moves up a layer. Heights are at most 128.
//
// # Node layout
//
// A node is a canonical DAG-CBOR map with keys in the order "e", "l"; each
// entry is a map with keys in the order "k", "p", "t", "v":
//
//	{ "e": [ {"k": bytes, "p": uint, "t": link|null, "v": link}, … ],
//	  "l": link|null }
//
//	a2                     map(2)
//	  61 65                "e"
//	  8N                   array(N entries)
//	    a4                 map(4)
//	      61 6b 4X …       "k": key bytes after the shared prefix
//	      61 70 0P         "p": bytes shared with the previous key (0 for the first)
//	      61 74 f6|d8 2a … "t": subtree right of this entry, or null
//	      61 76 d8 2a …    "v": record CID
//	  61 6c f6|d8 2a …     "l": subtree left of the first entry, or null
//
// A link is tag 42 over a byte string 00 ‖ binary CID. The empty tree is the
// single node a2 61 65 80 61 6c f6 ({"e":[],"l":null}).
//
// Invariants checked on every decoded node: canonical encoding only (minimal
// lengths, exact key order, no trailing bytes); at most MaxEntries entries;
// "p" is exactly the common-prefix length with the previous key (maximal
// compression); keys are valid, non-empty, at most MaxKeyLen bytes and
// strictly increasing; every key's height equals the node's layer; "t"/"l"
// links are blessed dag-cbor CIDs and point exactly one layer down; keys of
// a subtree lie strictly between the keys bounding its gap; only the root
// may be the empty node, and the root is never an entry-less node pointing
// down (it is trimmed).
//
// # Inversion
//
// A #commit carries only part of the new tree: the nodes that changed plus
// the neighbours needed to undo the ops (spec §12.4). Inverter loads every
// node reachable from the new root whose block is present; a child whose
// block is absent stays an opaque stub that is known only by its CID. The
// ops are then undone on that partial tree and the root is re-hashed; only
// modified nodes are re-encoded, stubs keep their CID. Any step that must
// look inside a stub (descending, splitting or merging it) fails with
// ErrMissingBlock. Trimming the root may leave a stub as the new root; its
// CID is then the tree's root CID.
//
// SHA-256 dominates the cost of a small commit, so each hash is taken
// once: InvertVerified/CheckVerified skip re-hashing node blocks for a
// getter that already verified them (the relay's CAR reader), and an op's
// path height is read from the loaded node that holds the key (whose keys'
// heights loading checked) instead of being hashed again.
//
// # Ownership
//
// Tree, Inverter and Walker are each used by one goroutine at a time. Slices
// they return alias their internal buffers unless documented otherwise.
package mst
