// Package cid parses, formats and verifies content identifiers (CIDs) as
// atproto uses them.
//
// # Layout
//
// A CIDv1 in binary form is
//
//	varint(version=1) ‖ varint(codec) ‖ varint(hash) ‖ varint(digest length) ‖ digest
//
// The atproto "blessed" profile is CIDv1, codec dag-cbor (0x71) or raw (0x55),
// hash sha2-256 (0x12), a 32-byte digest: exactly 36 bytes,
//
//	01 71 12 20 <sha256>   (dag-cbor: commits, MST nodes, records)
//	01 55 12 20 <sha256>   (raw: blobs)
//
// The string form is multibase base32 lower case without padding, prefix 'b'
// (so "bafyrei…" for dag-cbor and "bafkrei…" for raw).
//
// # Ownership
//
// CID is a byte slice. Parse returns a view into its input and never copies:
// the CID is valid only as long as the input buffer is. Clone makes an owned
// copy. Functions whose name starts with Append write into a caller-owned
// buffer so hot paths can reuse scratch space.
package cid

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
)

// Codec and hash identifiers used by atproto.
const (
	CodecDagCBOR = 0x71 // DRISL / DAG-CBOR blocks
	CodecRaw     = 0x55 // blobs
	HashSHA256   = 0x12
)

// BlessedLen is the length of a binary blessed CID: 4 prefix bytes and a
// 32-byte SHA-256 digest.
const BlessedLen = 36

// MaxLen bounds the binary length of any CID the relay accepts (digest of
// data-validation §3.3). Longer CIDs are rejected as hostile.
const MaxLen = 100

// Errors returned by Parse and Decode. They are distinct values so callers
// can count them without string matching.
var (
	ErrTruncated    = errors.New("cid: truncated")
	ErrVersion      = errors.New("cid: not CIDv1")
	ErrVarint       = errors.New("cid: malformed varint")
	ErrTooLong      = errors.New("cid: longer than MaxLen")
	ErrNotBlessed   = errors.New("cid: not a blessed atproto CID (v1, dag-cbor or raw, sha2-256)")
	ErrBadString    = errors.New("cid: malformed base32 string")
	ErrHashMismatch = errors.New("cid: digest does not match data")
)

// CID is a binary CIDv1. It may alias a larger buffer; see the package doc.
type CID []byte

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// uvarint decodes a minimal unsigned LEB128 varint of at most 9 bytes.
// It returns the value and the number of bytes read, or n <= 0 on error
// (0: truncated, -1: malformed or non-minimal).
func uvarint(b []byte) (v uint64, n int) {
	for i := 0; i < len(b) && i < 9; i++ {
		c := b[i]
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, -1 // non-minimal encoding
			}
			return v, i + 1
		}
	}
	if len(b) < 9 {
		return 0, 0
	}
	return 0, -1
}

// Parse reads one binary CIDv1 from the start of b and returns it (a view
// into b) and the rest of b. Any well-formed CIDv1 up to MaxLen bytes is
// accepted; use IsBlessed to demand the atproto profile.
func Parse(b []byte) (c CID, rest []byte, err error) {
	pos := 0
	var fields [4]uint64
	for i := range fields {
		v, n := uvarint(b[pos:])
		if n == 0 {
			return nil, b, ErrTruncated
		}
		if n < 0 {
			return nil, b, ErrVarint
		}
		fields[i] = v
		pos += n
	}
	if fields[0] != 1 {
		return nil, b, ErrVersion
	}
	dlen := fields[3]
	if dlen > MaxLen {
		return nil, b, ErrTooLong
	}
	end := pos + int(dlen)
	if end > MaxLen {
		return nil, b, ErrTooLong
	}
	if end > len(b) {
		return nil, b, ErrTruncated
	}
	return CID(b[:end:end]), b[end:], nil
}

// ParseExact parses b as exactly one CID with no trailing bytes.
func ParseExact(b []byte) (CID, error) {
	c, rest, err := Parse(b)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("cid: %d trailing bytes", len(rest))
	}
	return c, nil
}

// IsBlessed reports whether c is a 36-byte CIDv1 sha2-256 with codec
// dag-cbor or raw.
func (c CID) IsBlessed() bool {
	return len(c) == BlessedLen && c[0] == 1 && (c[1] == CodecDagCBOR || c[1] == CodecRaw) &&
		c[2] == HashSHA256 && c[3] == 32
}

// IsBlessedDagCBOR reports whether c is a blessed dag-cbor CID, the only
// form allowed for commit data links and MST node links.
func (c CID) IsBlessedDagCBOR() bool {
	return c.IsBlessed() && c[1] == CodecDagCBOR
}

// Codec returns the codec of a parsed CID (0 if c is not well formed).
func (c CID) Codec() uint64 {
	if len(c) < 2 {
		return 0
	}
	v, n := uvarint(c[1:])
	if n <= 0 {
		return 0
	}
	return v
}

// Equal reports whether two CIDs have the same bytes.
func (c CID) Equal(o CID) bool { return bytes.Equal(c, o) }

// Defined reports whether c holds a CID (as opposed to the nil "no CID").
func (c CID) Defined() bool { return len(c) > 0 }

// Clone returns a copy of c that owns its bytes.
func (c CID) Clone() CID {
	if c == nil {
		return nil
	}
	return append(CID(nil), c...)
}

// Verify reports whether c is a blessed CID whose digest is SHA-256(data).
func (c CID) Verify(data []byte) bool {
	if !c.IsBlessed() {
		return false
	}
	sum := sha256.Sum256(data)
	return bytes.Equal(c[4:], sum[:])
}

// AppendSum appends the blessed CID of data with the given codec to dst.
func AppendSum(dst []byte, codec byte, data []byte) []byte {
	sum := sha256.Sum256(data)
	dst = append(dst, 1, codec, HashSHA256, 32)
	return append(dst, sum[:]...)
}

// Sum returns the blessed CID of data with the given codec, in new memory.
func Sum(codec byte, data []byte) CID {
	return CID(AppendSum(make([]byte, 0, BlessedLen), codec, data))
}

// String formats c as multibase base32 ("b…"). It allocates.
func (c CID) String() string {
	if len(c) == 0 {
		return ""
	}
	buf := make([]byte, 1+b32.EncodedLen(len(c)))
	buf[0] = 'b'
	b32.Encode(buf[1:], c)
	return string(buf)
}

// AppendString appends the base32 string form of c to dst.
func (c CID) AppendString(dst []byte) []byte {
	n := b32.EncodedLen(len(c))
	dst = append(dst, 'b')
	start := len(dst)
	dst = append(dst, make([]byte, n)...)
	b32.Encode(dst[start:], c)
	return dst
}

// Decode parses the base32 string form ("b…") of a CIDv1 into new memory.
func Decode(s string) (CID, error) {
	if len(s) < 2 || s[0] != 'b' {
		return nil, ErrBadString
	}
	if len(s) > 1+b32.EncodedLen(MaxLen) {
		return nil, ErrTooLong
	}
	raw := make([]byte, b32.DecodedLen(len(s)-1))
	n, err := b32.Decode(raw, []byte(s[1:]))
	if err != nil {
		return nil, ErrBadString
	}
	c, err := ParseExact(raw[:n])
	if err != nil {
		return nil, err
	}
	// Reject strings that only decode because of trailing bits: the
	// canonical re-encoding must give back the same text.
	if c.String() != s {
		return nil, ErrBadString
	}
	return c, nil
}

// MustDecode is Decode for constants in tests and tables; it panics on error.
func MustDecode(s string) CID {
	c, err := Decode(s)
	if err != nil {
		panic(err)
	}
	return c
}
