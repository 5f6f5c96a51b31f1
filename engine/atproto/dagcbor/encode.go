package dagcbor

import (
	"encoding/binary"
	"math"

	"github.com/atrelay/relay/engine/atproto/cid"
)

// The Append functions write canonical DAG-CBOR into a caller-owned buffer
// and return the extended buffer, like strconv.AppendInt. Heads always use
// the shortest form. Callers building maps must write keys in canonical
// order themselves (length first, then bytewise); these helpers only write
// items.

// AppendHead appends a head of the given major type with argument arg in
// its shortest form.
func AppendHead(dst []byte, m Major, arg uint64) []byte {
	mt := byte(m) << 5
	switch {
	case arg < 24:
		return append(dst, mt|byte(arg))
	case arg <= math.MaxUint8:
		return append(dst, mt|24, byte(arg))
	case arg <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, mt|25), uint16(arg))
	case arg <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, mt|26), uint32(arg))
	default:
		return binary.BigEndian.AppendUint64(append(dst, mt|27), arg)
	}
}

// AppendUint appends an unsigned integer. Values above math.MaxInt64 are
// outside the atproto data model; callers must not pass them.
func AppendUint(dst []byte, v uint64) []byte {
	return AppendHead(dst, MajorUint, v)
}

// AppendInt appends a signed integer (major type 0 or 1).
func AppendInt(dst []byte, v int64) []byte {
	if v >= 0 {
		return AppendHead(dst, MajorUint, uint64(v))
	}
	return AppendHead(dst, MajorNegInt, uint64(-1-v))
}

// AppendText appends a text string. s must be valid UTF-8; it may be a
// string or a byte view, so decoded fields re-encode without conversion.
func AppendText[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = AppendHead(dst, MajorText, uint64(len(s)))
	return append(dst, s...)
}

// AppendBytes appends a byte string.
func AppendBytes(dst []byte, b []byte) []byte {
	dst = AppendHead(dst, MajorBytes, uint64(len(b)))
	return append(dst, b...)
}

// AppendMapHeader appends the head of a map of n pairs.
func AppendMapHeader(dst []byte, n int) []byte {
	return AppendHead(dst, MajorMap, uint64(n))
}

// AppendArrayHeader appends the head of an array of n elements.
func AppendArrayHeader(dst []byte, n int) []byte {
	return AppendHead(dst, MajorArray, uint64(n))
}

// AppendNull appends null (0xf6).
func AppendNull(dst []byte) []byte {
	return append(dst, 0xf6)
}

// AppendBool appends false (0xf4) or true (0xf5).
func AppendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 0xf5)
	}
	return append(dst, 0xf4)
}

// AppendCIDLink appends a CID link: tag 42 wrapping a byte string of 0x00
// followed by the binary CID (for a blessed CID: d8 2a 58 25 00 01 71 12 20 …).
func AppendCIDLink(dst []byte, c cid.CID) []byte {
	dst = append(dst, 0xd8, TagCID)
	dst = AppendHead(dst, MajorBytes, uint64(len(c)+1))
	dst = append(dst, 0)
	return append(dst, c...)
}

// IntLen returns the encoded length of AppendInt(nil, v) without writing it.
func IntLen(v int64) int {
	u := uint64(v)
	if v < 0 {
		u = uint64(-1 - v)
	}
	switch {
	case u < 24:
		return 1
	case u <= math.MaxUint8:
		return 2
	case u <= math.MaxUint16:
		return 3
	case u <= math.MaxUint32:
		return 5
	default:
		return 9
	}
}
