package mst

import (
	"bytes"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/dagcbor"
)

// NodeData is one MST node in wire form with full (decompressed) keys.
// After DecodeNode its CIDs alias the decoded block and its keys alias the
// key buffer passed to DecodeNode; both stay valid as long as those do.
type NodeData struct {
	// Left is the subtree left of the first entry; nil when absent.
	Left cid.CID
	// Entries are in strictly increasing key order.
	Entries []EntryData
}

// EntryData is one key/value pair of a node and the subtree to its right.
type EntryData struct {
	Key   []byte
	Value cid.CID
	// Right is the subtree between this key and the next; nil when absent.
	Right cid.CID
}

// Fixed byte strings of the node shape (map headers and one-letter keys).
const (
	cborNull   = 0xf6
	majorUint  = 0 << 5
	majorBytes = 2 << 5
	majorArray = 4 << 5
)

// emptyNode is the encoding of the empty tree, {"e":[],"l":null}.
const emptyNode = "\xa2\x61\x65\x80\x61\x6c\xf6"

// emptyRootCID is the CID of emptyNode (bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm).
const emptyRootCID = "\x01\x71\x12\x20" +
	"\x9d\xfe\xfe\x61\xdd\x76\xea\x3d\xca\xe5\x02\x38\x80\xb0\x83\x79" +
	"\xd5\x7a\xdf\x20\x48\x2d\x6f\xdb\xe2\x75\x92\x89\xf6\x47\x67\x7b"

// decoder walks a node block; pos only moves forward. Local to one
// DecodeNode call.
type decoder struct {
	b   []byte
	pos int
}

func (d *decoder) lit(s string) bool {
	if len(d.b)-d.pos < len(s) || string(d.b[d.pos:d.pos+len(s)]) != s {
		return false
	}
	d.pos += len(s)
	return true
}

// head reads a CBOR head of the given major type with a minimally encoded
// argument no larger than max.
func (d *decoder) head(major byte, max uint64) (uint64, bool) {
	if d.pos >= len(d.b) || d.b[d.pos]&0xe0 != major {
		return 0, false
	}
	info := d.b[d.pos] & 0x1f
	d.pos++
	var n int
	switch {
	case info < 24:
		if uint64(info) > max {
			return 0, false
		}
		return uint64(info), true
	case info == 24:
		n = 1
	case info == 25:
		n = 2
	case info == 26:
		n = 4
	case info == 27:
		n = 8
	default:
		return 0, false
	}
	if len(d.b)-d.pos < n {
		return 0, false
	}
	var v uint64
	for _, c := range d.b[d.pos : d.pos+n] {
		v = v<<8 | uint64(c)
	}
	d.pos += n
	// Minimal form: the value must not fit a shorter head.
	lo := [...]uint64{1: 24, 2: 1 << 8, 4: 1 << 16, 8: 1 << 32}[n]
	if v < lo || v > max {
		return 0, false
	}
	return v, true
}

// bytesOf reads a byte string of at most max bytes and returns a view.
func (d *decoder) bytesOf(max int) ([]byte, bool) {
	n, ok := d.head(majorBytes, uint64(max))
	if !ok || uint64(len(d.b)-d.pos) < n {
		return nil, false
	}
	s := d.b[d.pos : d.pos+int(n) : d.pos+int(n)]
	d.pos += int(n)
	return s, true
}

// link reads tag 42 over 00 ‖ CID, or null when nullable. A nil CID with
// nil error means null.
func (d *decoder) link(nullable bool) (cid.CID, error) {
	if nullable && d.pos < len(d.b) && d.b[d.pos] == cborNull {
		d.pos++
		return nil, nil
	}
	if !d.lit("\xd8\x2a") {
		return nil, ErrNodeEncoding
	}
	raw, ok := d.bytesOf(1 + cid.MaxLen)
	if !ok || len(raw) < 2 || raw[0] != 0 {
		return nil, ErrNodeEncoding
	}
	if c := cid.CID(raw[1:]); c.IsBlessed() {
		// Nearly every link: the general parse would return the same view.
		return c, nil
	}
	c, err := cid.ParseExact(raw[1:])
	if err != nil {
		return nil, ErrBadCID
	}
	return c, nil
}

// childLink reads a nullable node→node link, which must be blessed dag-cbor.
func (d *decoder) childLink() (cid.CID, error) {
	c, err := d.link(true)
	if err == nil && c != nil && !c.IsBlessedDagCBOR() {
		return nil, ErrLinkNotBlessed
	}
	return c, err
}

// DecodeNode parses block b into nd, strictly: anything but the canonical
// encoding of a well-formed node is rejected (see the package doc for the
// checks; heights and subtree bounds need the node's position and are
// checked by the tree loaders). Keys are rebuilt by appending to keys,
// which is returned for reuse; nd.Entries' capacity is reused.
func DecodeNode(nd *NodeData, b []byte, keys []byte) ([]byte, error) {
	clear(nd.Entries)
	nd.Entries = nd.Entries[:0]
	nd.Left = nil
	d := decoder{b: b}
	if !d.lit("\xa2\x61\x65") {
		return keys, ErrNodeEncoding
	}
	n, ok := d.head(majorArray, 1<<32)
	if !ok {
		return keys, ErrNodeEncoding
	}
	if n > MaxEntries {
		return keys, ErrTooManyEntries
	}
	var prev []byte
	for range n {
		if !d.lit("\xa4\x61\x6b") {
			return keys, ErrNodeEncoding
		}
		suffix, ok := d.bytesOf(MaxKeyLen)
		if !ok || !d.lit("\x61\x70") {
			return keys, ErrNodeEncoding
		}
		p, ok := d.head(majorUint, MaxKeyLen)
		if !ok || !d.lit("\x61\x74") {
			return keys, ErrNodeEncoding
		}
		right, err := d.childLink()
		if err != nil {
			return keys, err
		}
		if !d.lit("\x61\x76") {
			return keys, ErrNodeEncoding
		}
		val, err := d.link(false)
		if err != nil {
			return keys, err
		}
		if int(p) > len(prev) || int(p)+len(suffix) > MaxKeyLen {
			return keys, ErrBadPrefix
		}
		// Maximal compression: the suffix must not continue the shared run.
		if int(p) < len(prev) && len(suffix) > 0 && suffix[0] == prev[p] {
			return keys, ErrBadPrefix
		}
		start := len(keys)
		keys = append(keys, prev[:p]...)
		keys = append(keys, suffix...)
		key := keys[start:len(keys):len(keys)]
		if prev != nil && bytes.Compare(key, prev) <= 0 {
			return keys, ErrKeyOrder
		}
		if !ValidKey(key) {
			return keys, ErrKeyInvalid
		}
		nd.Entries = append(nd.Entries, EntryData{Key: key, Value: val, Right: right})
		prev = key
	}
	if !d.lit("\x61\x6c") {
		return keys, ErrNodeEncoding
	}
	left, err := d.childLink()
	if err != nil {
		return keys, err
	}
	if d.pos != len(b) {
		return keys, ErrNodeEncoding
	}
	nd.Left = left
	return keys, nil
}

// AppendNode appends the canonical encoding of nd to dst. The caller
// guarantees keys are sorted and unique; AppendNode only encodes.
func AppendNode(dst []byte, nd *NodeData) []byte {
	dst = append(dst, 0xa2, 0x61, 'e')
	dst = appendHead(dst, majorArray, uint64(len(nd.Entries)))
	var prev []byte
	for i := range nd.Entries {
		e := &nd.Entries[i]
		dst = appendEntry(dst, prev, e.Key, e.Value, e.Right)
		prev = e.Key
	}
	dst = append(dst, 0x61, 'l')
	return appendLink(dst, nd.Left)
}

// appendEntry encodes one entry map, compressing key against prev.
func appendEntry(dst, prev, key []byte, val, right cid.CID) []byte {
	p := commonPrefix(prev, key)
	dst = append(dst, 0xa4, 0x61, 'k')
	dst = appendHead(dst, majorBytes, uint64(len(key)-p))
	dst = append(dst, key[p:]...)
	dst = append(dst, 0x61, 'p')
	dst = appendHead(dst, majorUint, uint64(p))
	dst = append(dst, 0x61, 't')
	dst = appendLink(dst, right)
	dst = append(dst, 0x61, 'v')
	return appendLink(dst, val)
}

// appendLink encodes c as a tag-42 link, or null when c is empty.
func appendLink(dst []byte, c cid.CID) []byte {
	if len(c) == 0 {
		return append(dst, cborNull)
	}
	dst = append(dst, 0xd8, 0x2a)
	dst = appendHead(dst, majorBytes, uint64(len(c)+1))
	dst = append(dst, 0)
	return append(dst, c...)
}

// appendHead appends a minimal CBOR head; major is pre-shifted (the
// majorX constants).
func appendHead(dst []byte, major byte, v uint64) []byte {
	return dagcbor.AppendHead(dst, dagcbor.Major(major>>5), v)
}
