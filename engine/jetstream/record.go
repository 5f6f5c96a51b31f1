package jetstream

import (
	"bytes"
	"encoding/base64"
	"errors"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/atrelay/relay/engine/atproto/dagcbor"
)

// Errors of appendRecordJSON, one per reason a record block has no JSON
// form in the atproto data model. The op is skipped and counted.
var (
	errRecordNotMap = errors.New("jetstream: record is not a map")
	errRecordCBOR   = errors.New("jetstream: record is not well-formed CBOR")
	errRecordType   = errors.New("jetstream: record holds a value outside the atproto data model")
	errRecordDepth  = errors.New("jetstream: record nests deeper than dagcbor.MaxDepth")
	errRecordDupKey = errors.New("jetstream: record map has a duplicate key")
)

// mapEntry locates one key/value pair of a CBOR map being converted: the
// key's text bytes and the value's first byte, as offsets into the record.
type mapEntry struct {
	keyStart, keyEnd int
	val              int
}

// recordJSON converts record blocks (DAG-CBOR) to JSON following the
// atproto data model: a CID link becomes {"$link": "<base32 CID>"}, a byte
// string {"$bytes": "<base64, standard alphabet, no padding>"}, and every
// other value its plain JSON counterpart (a blob is an ordinary map and stays
// one). Map keys are written in bytewise order, the order Jetstream's
// encoder (Go's JSON map encoding) produces, so the output matches it byte
// for byte up to number formatting; strings are escaped as Go's
// encoding/json escapes them (including <, > and &).
//
// Rejected, as the data model has no JSON for them: floats, undefined and
// other simple values, tags other than 42, non-text map keys, duplicate
// keys, indefinite lengths, integers outside the signed 64-bit range, and a
// top level that is not a map.
//
// A recordJSON is scratch for one goroutine; it does not allocate once its
// entry stack has grown to the largest record seen.
type recordJSON struct {
	// ents is a stack of the entries of the maps being converted, innermost
	// last; each map sorts its own segment.
	ents []mapEntry
	rec  []byte
}

// appendRecord appends the JSON form of the record rec to dst. On error
// dst is returned cut back to its original length.
func (c *recordJSON) appendRecord(dst, rec []byte) ([]byte, error) {
	if len(rec) == 0 || dagcbor.Major(rec[0]>>5) != dagcbor.MajorMap {
		return dst, errRecordNotMap
	}
	c.rec = rec
	c.ents = c.ents[:0]
	base := len(dst)
	out, n, err := c.value(dst, 0, 1)
	c.rec = nil
	if err == nil && n != len(rec) {
		err = errRecordCBOR
	}
	if err != nil {
		return dst[:base], err
	}
	return out, nil
}

// value appends the JSON form of the item at c.rec[off:] and returns the
// offset just past the item.
func (c *recordJSON) value(dst []byte, off, depth int) ([]byte, int, error) {
	if depth > dagcbor.MaxDepth {
		return dst, 0, errRecordDepth
	}
	m, arg, n, err := dagcbor.ReadHead(c.rec[off:])
	if err != nil {
		if errors.Is(err, dagcbor.ErrIndefinite) {
			return dst, 0, errRecordType
		}
		return dst, 0, errRecordCBOR
	}
	body := off + n
	switch m {
	case dagcbor.MajorUint:
		if arg > math.MaxInt64 {
			return dst, 0, errRecordType
		}
		return strconv.AppendUint(dst, arg, 10), body, nil
	case dagcbor.MajorNegInt:
		if arg > math.MaxInt64 {
			return dst, 0, errRecordType
		}
		return strconv.AppendInt(dst, -1-int64(arg), 10), body, nil
	case dagcbor.MajorBytes:
		end, ok := c.span(body, arg)
		if !ok {
			return dst, 0, errRecordCBOR
		}
		dst = append(dst, `{"$bytes":"`...)
		dst = base64.RawStdEncoding.AppendEncode(dst, c.rec[body:end])
		return append(dst, `"}`...), end, nil
	case dagcbor.MajorText:
		end, ok := c.span(body, arg)
		if !ok {
			return dst, 0, errRecordCBOR
		}
		return appendJSONString(dst, c.rec[body:end]), end, nil
	case dagcbor.MajorArray:
		if arg > dagcbor.MaxContainerLen {
			return dst, 0, errRecordCBOR
		}
		dst = append(dst, '[')
		p := body
		for i := uint64(0); i < arg; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, p, err = c.value(dst, p, depth+1); err != nil {
				return dst, 0, err
			}
		}
		return append(dst, ']'), p, nil
	case dagcbor.MajorMap:
		return c.mapValue(dst, body, arg, depth)
	case dagcbor.MajorTag:
		if arg != dagcbor.TagCID {
			return dst, 0, errRecordType
		}
		link, ln, err := dagcbor.ReadCIDLink(c.rec[off:])
		if err != nil {
			return dst, 0, errRecordType
		}
		dst = append(dst, `{"$link":"`...)
		dst = link.AppendString(dst)
		return append(dst, `"}`...), off + ln, nil
	default: // MajorSimple
		switch {
		case n == 1 && arg == 20:
			return append(dst, "false"...), body, nil
		case n == 1 && arg == 21:
			return append(dst, "true"...), body, nil
		case n == 1 && arg == 22:
			return append(dst, "null"...), body, nil
		}
		return dst, 0, errRecordType
	}
}

// span returns the end of an n-byte string starting at off, or false when
// the record is shorter.
func (c *recordJSON) span(off int, n uint64) (int, bool) {
	if n > uint64(len(c.rec)-off) {
		return 0, false
	}
	return off + int(n), true
}

// mapValue appends a map of n pairs whose first key starts at off. It
// first locates every pair (skipping values with dagcbor.WellformedFirst),
// then sorts the keys and converts the values in that order.
func (c *recordJSON) mapValue(dst []byte, off int, n uint64, depth int) ([]byte, int, error) {
	if n > dagcbor.MaxContainerLen {
		return dst, 0, errRecordCBOR
	}
	seg := len(c.ents)
	p := off
	for i := uint64(0); i < n; i++ {
		m, klen, hn, err := dagcbor.ReadHead(c.rec[p:])
		if err != nil || m != dagcbor.MajorText {
			c.ents = c.ents[:seg]
			if err == nil || errors.Is(err, dagcbor.ErrIndefinite) {
				return dst, 0, errRecordType
			}
			return dst, 0, errRecordCBOR
		}
		ks := p + hn
		ke, ok := c.span(ks, klen)
		if !ok {
			c.ents = c.ents[:seg]
			return dst, 0, errRecordCBOR
		}
		vn, err := dagcbor.WellformedFirst(c.rec[ke:])
		if err != nil {
			c.ents = c.ents[:seg]
			return dst, 0, errRecordCBOR
		}
		c.ents = append(c.ents, mapEntry{keyStart: ks, keyEnd: ke, val: ke})
		p = ke + vn
	}
	end := p
	c.sortSegment(seg)
	dst = append(dst, '{')
	for i := seg; i < seg+int(n); i++ {
		e := c.ents[i]
		if i > seg {
			if string(c.rec[e.keyStart:e.keyEnd]) == string(c.rec[c.ents[i-1].keyStart:c.ents[i-1].keyEnd]) {
				c.ents = c.ents[:seg]
				return dst, 0, errRecordDupKey
			}
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, c.rec[e.keyStart:e.keyEnd])
		dst = append(dst, ':')
		var err error
		// c.value may grow c.ents (nested maps push above this segment),
		// so e is a copy and the segment is re-read by index.
		if dst, _, err = c.value(dst, e.val, depth+1); err != nil {
			c.ents = c.ents[:seg]
			return dst, 0, err
		}
	}
	c.ents = c.ents[:seg]
	return append(dst, '}'), end, nil
}

// insertionSortMax is the most keys sortSegment insertion-sorts. Records
// have few keys, in canonical DAG-CBOR order (shorter first), which is
// already close to bytewise order, so up to here an insertion sort beats
// anything else. Above it the keys are a PDS's choice and may come in
// descending order, where an insertion sort does n²/2 swaps: the most pairs
// dagcbor allows would hold the pump (and s.mu) for tens of seconds.
const insertionSortMax = 16

// sortSegment sorts c.ents[seg:] by key bytes.
func (c *recordJSON) sortSegment(seg int) { sortEntries(c.ents[seg:], c.compareKeys) }

// sortEntries sorts s by cmp in O(n log n) comparisons whatever the
// order, allocating nothing: an insertion sort up to insertionSortMax
// entries, pdqsort above.
func sortEntries(s []mapEntry, cmp func(a, b mapEntry) int) {
	if len(s) > insertionSortMax {
		slices.SortFunc(s, cmp)
		return
	}
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && cmp(s[j], s[j-1]) < 0; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// compareKeys orders entries by key bytes. Equal keys compare equal and
// end up adjacent, where mapValue refuses them.
func (c *recordJSON) compareKeys(a, b mapEntry) int {
	return bytes.Compare(c.rec[a.keyStart:a.keyEnd], c.rec[b.keyStart:b.keyEnd])
}

// hexDigits are the digits of \u00XX escapes.
const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaped as Go's
// encoding/json escapes it with HTML escaping on: ", \ and control
// characters, <, > and &, U+2028 and U+2029; invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
