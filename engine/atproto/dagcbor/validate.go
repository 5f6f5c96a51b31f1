package dagcbor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"unicode/utf8"

	"github.com/atrelay/relay/engine/atproto/cid"
)

// Limits of spec §3.3 (guides/data-validation). They apply in every mode.
const (
	// MaxDepth is the deepest allowed nesting of arrays, maps and tags; the
	// top-level container is at depth 1.
	MaxDepth = 32
	// MaxContainerLen bounds the element count of one array and the pair
	// count of one map.
	MaxContainerLen = 131072
	// MaxKeyLen bounds the byte length of one map key.
	MaxKeyLen = 8192
)

// Errors, one per reason an item is rejected. Checks return them unwrapped.
var (
	ErrTruncated       = errors.New("dagcbor: truncated item")
	ErrTrailing        = errors.New("dagcbor: trailing bytes after item")
	ErrNonCanonicalInt = errors.New("dagcbor: integer or length not in shortest form")
	ErrIndefinite      = errors.New("dagcbor: indefinite length")
	ErrReserved        = errors.New("dagcbor: reserved additional information 28..30")
	ErrBreak           = errors.New("dagcbor: unexpected break")
	ErrIntRange        = errors.New("dagcbor: integer outside signed 64-bit range")
	ErrUTF8            = errors.New("dagcbor: text string is not valid UTF-8")
	ErrMapKeyType      = errors.New("dagcbor: map key is not a text string")
	ErrMapKeyOrder     = errors.New("dagcbor: map keys not in canonical order")
	ErrDupMapKey       = errors.New("dagcbor: duplicate map key")
	ErrKeyLen          = errors.New("dagcbor: map key longer than MaxKeyLen")
	ErrFloat           = errors.New("dagcbor: floating-point number")
	ErrSimple          = errors.New("dagcbor: simple value other than false, true, null")
	ErrTag             = errors.New("dagcbor: tag other than 42")
	ErrCIDLink         = errors.New("dagcbor: tag 42 does not wrap 0x00 and a well-formed CID")
	ErrDepth           = errors.New("dagcbor: nesting deeper than MaxDepth")
	ErrContainerLen    = errors.New("dagcbor: container longer than MaxContainerLen")
	ErrChunk           = errors.New("dagcbor: indefinite string chunk of the wrong type")
)

// mode selects which rules the scanner applies.
type mode uint8

const (
	modeCanonical  mode = iota // Validate: every rule of the package doc
	modeEnvelope               // spec §3.5 frames: canonical minus key order and head width
	modeWellformed             // record blocks: RFC 8949 structure plus limits
)

// Major is a CBOR major type (the top three bits of a head byte).
type Major uint8

// The CBOR major types.
const (
	MajorUint   Major = 0
	MajorNegInt Major = 1
	MajorBytes  Major = 2
	MajorText   Major = 3
	MajorArray  Major = 4
	MajorMap    Major = 5
	MajorTag    Major = 6
	MajorSimple Major = 7
)

// TagCID is the CBOR tag number of a CID link.
const TagCID = 42

// head is one decoded item head.
type head struct {
	major Major
	ai    byte
	arg   uint64
	n     int // bytes used by the head
}

// readHead decodes the head at b[0]. It reports ai 31 as ai=31, arg=0 and
// leaves the decision to the caller. minimal is false when a shorter head
// could have carried arg.
func readHead(b []byte) (h head, minimal bool, err error) {
	if len(b) == 0 {
		return h, false, ErrTruncated
	}
	c := b[0]
	h.major = Major(c >> 5)
	h.ai = c & 0x1f
	switch {
	case h.ai < 24:
		h.arg, h.n = uint64(h.ai), 1
		return h, true, nil
	case h.ai == 24:
		if len(b) < 2 {
			return h, false, ErrTruncated
		}
		h.arg, h.n = uint64(b[1]), 2
		return h, h.arg >= 24, nil
	case h.ai == 25:
		if len(b) < 3 {
			return h, false, ErrTruncated
		}
		h.arg, h.n = uint64(binary.BigEndian.Uint16(b[1:])), 3
		return h, h.arg > math.MaxUint8, nil
	case h.ai == 26:
		if len(b) < 5 {
			return h, false, ErrTruncated
		}
		h.arg, h.n = uint64(binary.BigEndian.Uint32(b[1:])), 5
		return h, h.arg > math.MaxUint16, nil
	case h.ai == 27:
		if len(b) < 9 {
			return h, false, ErrTruncated
		}
		h.arg, h.n = binary.BigEndian.Uint64(b[1:]), 9
		return h, h.arg > math.MaxUint32, nil
	case h.ai == 31:
		h.n = 1
		return h, true, nil
	default:
		return h, false, ErrReserved
	}
}

// ReadHead decodes the definite head at the start of b: its major type, its
// argument (value, length, count or tag number) and its size in bytes. It
// does not look past the head. Indefinite heads return ErrIndefinite; for
// major type 7 the argument is the simple value or the raw float bits.
func ReadHead(b []byte) (m Major, arg uint64, n int, err error) {
	h, _, err := readHead(b)
	if err != nil {
		return 0, 0, 0, err
	}
	if h.ai == 31 {
		return 0, 0, 0, ErrIndefinite
	}
	return h.major, h.arg, h.n, nil
}

// Validate reports whether b is exactly one canonical atproto DAG-CBOR item
// (see the package doc). It does not allocate.
func Validate(b []byte) error {
	return exact(b, modeCanonical)
}

// ValidateFirst checks that b starts with one canonical DAG-CBOR item and
// returns its length; bytes after it are not examined.
func ValidateFirst(b []byte) (n int, err error) {
	return scan(b, modeCanonical)
}

// Envelope checks that b starts with one item that obeys the frame-envelope
// policy of spec §3.5 and returns its length. The item rules of Validate
// apply except key order and head width: map keys must still be text strings
// but may come in any order; a non-shortest head is accepted. Duplicate keys
// are not detected here (decoders of known fields detect them).
func Envelope(b []byte) (n int, err error) {
	return scan(b, modeEnvelope)
}

// Wellformed reports whether b is exactly one well-formed CBOR item within
// the limits of the package (depth, container length, key length). It is the
// lenient check for record blocks: any key type or order, any tag, floats
// and indefinite lengths are accepted; text is not checked for UTF-8.
func Wellformed(b []byte) error {
	return exact(b, modeWellformed)
}

// WellformedFirst is Wellformed for the first item of b; it returns the
// item's length and ignores what follows.
func WellformedFirst(b []byte) (n int, err error) {
	return scan(b, modeWellformed)
}

func exact(b []byte, m mode) error {
	n, err := scan(b, m)
	if err != nil {
		return err
	}
	if n != len(b) {
		return ErrTrailing
	}
	return nil
}

func scan(b []byte, m mode) (int, error) {
	s := scanner{b: b, mode: m}
	return s.item(0, 0)
}

// scanner walks one buffer. It is a value on the caller's stack.
type scanner struct {
	b    []byte
	mode mode
}

// item checks the item at off, whose enclosing depth is depth, and returns
// the offset just after it.
func (s *scanner) item(off, depth int) (int, error) {
	h, minimal, err := readHead(s.b[off:])
	if err != nil {
		return 0, err
	}
	if !minimal && s.mode == modeCanonical {
		return 0, ErrNonCanonicalInt
	}
	if h.ai == 31 {
		if h.major == MajorSimple {
			return 0, ErrBreak
		}
		// Integers and tags have no indefinite form at all; strings and
		// containers have one that only the lenient mode accepts.
		if s.mode != modeWellformed || h.major < MajorBytes || h.major == MajorTag {
			return 0, ErrIndefinite
		}
		return s.indefinite(off+1, h.major, depth)
	}
	off += h.n
	switch h.major {
	case MajorUint, MajorNegInt:
		if h.arg > math.MaxInt64 && s.mode != modeWellformed {
			return 0, ErrIntRange
		}
		return off, nil
	case MajorBytes, MajorText:
		if h.arg > uint64(len(s.b)-off) {
			return 0, ErrTruncated
		}
		end := off + int(h.arg)
		if h.major == MajorText && s.mode != modeWellformed && !utf8.Valid(s.b[off:end]) {
			return 0, ErrUTF8
		}
		return end, nil
	case MajorArray:
		if err := s.container(h.arg, off, depth); err != nil {
			return 0, err
		}
		for i := uint64(0); i < h.arg; i++ {
			if off, err = s.item(off, depth+1); err != nil {
				return 0, err
			}
		}
		return off, nil
	case MajorMap:
		if err := s.container(h.arg, off, depth); err != nil {
			return 0, err
		}
		return s.mapBody(off, h.arg, depth)
	case MajorTag:
		if s.mode == modeWellformed {
			if depth+1 > MaxDepth {
				return 0, ErrDepth
			}
			return s.item(off, depth+1)
		}
		if h.arg != TagCID {
			return 0, ErrTag
		}
		_, n, err := cidLinkPayload(s.b[off:], s.mode == modeCanonical)
		if err != nil {
			return 0, err
		}
		return off + n, nil
	default: // MajorSimple
		return s.simple(h, off)
	}
}

// container applies the depth and length limits to an array or map of n
// entries whose first entry starts at off.
func (s *scanner) container(n uint64, off, depth int) error {
	if depth+1 > MaxDepth {
		return ErrDepth
	}
	if n > MaxContainerLen {
		return ErrContainerLen
	}
	// Every entry takes at least one byte: reject impossible counts before
	// looping over them.
	if n > uint64(len(s.b)-off) {
		return ErrTruncated
	}
	return nil
}

// mapBody checks n key/value pairs starting at off.
func (s *scanner) mapBody(off int, n uint64, depth int) (int, error) {
	var prev []byte
	for i := uint64(0); i < n; i++ {
		var err error
		if s.mode == modeWellformed {
			if h, _, err := readHead(s.b[off:]); err == nil && h.major == MajorText && h.ai != 31 && h.arg > MaxKeyLen {
				return 0, ErrKeyLen
			}
			if off, err = s.item(off, depth+1); err != nil {
				return 0, err
			}
		} else {
			var key []byte
			if key, off, err = s.key(off); err != nil {
				return 0, err
			}
			if s.mode == modeCanonical && i > 0 {
				switch c := compareKeys(prev, key); {
				case c == 0:
					return 0, ErrDupMapKey
				case c > 0:
					return 0, ErrMapKeyOrder
				}
			}
			prev = key
		}
		if off, err = s.item(off, depth+1); err != nil {
			return 0, err
		}
	}
	return off, nil
}

// key checks a text-string map key at off and returns its content.
func (s *scanner) key(off int) ([]byte, int, error) {
	h, minimal, err := readHead(s.b[off:])
	if err != nil {
		return nil, 0, err
	}
	if h.major != MajorText {
		return nil, 0, ErrMapKeyType
	}
	if h.ai == 31 {
		return nil, 0, ErrIndefinite
	}
	if !minimal && s.mode == modeCanonical {
		return nil, 0, ErrNonCanonicalInt
	}
	if h.arg > MaxKeyLen {
		return nil, 0, ErrKeyLen
	}
	off += h.n
	if h.arg > uint64(len(s.b)-off) {
		return nil, 0, ErrTruncated
	}
	k := s.b[off : off+int(h.arg)]
	if !utf8.Valid(k) {
		return nil, 0, ErrUTF8
	}
	return k, off + len(k), nil
}

// compareKeys orders map keys length-first, then bytewise (spec §3.2).
func compareKeys(a, b []byte) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return bytes.Compare(a, b)
}

func (s *scanner) simple(h head, off int) (int, error) {
	switch {
	case h.ai >= 25 && h.ai <= 27:
		if s.mode != modeWellformed {
			return 0, ErrFloat
		}
		return off, nil
	case h.ai == 20 || h.ai == 21 || h.ai == 22:
		return off, nil
	case s.mode != modeWellformed:
		return 0, ErrSimple
	case h.ai == 24 && h.arg < 32:
		// RFC 8949 §3.3: two-byte simple values below 32 are not well formed.
		return 0, ErrSimple
	default:
		return off, nil
	}
}

// indefinite checks the body of an indefinite-length item (wellformed mode
// only) starting at off and returns the offset after its break byte.
func (s *scanner) indefinite(off int, major Major, depth int) (int, error) {
	if major == MajorArray || major == MajorMap {
		if depth+1 > MaxDepth {
			return 0, ErrDepth
		}
	}
	var count uint64
	for {
		if off >= len(s.b) {
			return 0, ErrTruncated
		}
		if s.b[off] == 0xff {
			return off + 1, nil
		}
		count++
		if count > MaxContainerLen {
			return 0, ErrContainerLen
		}
		var err error
		switch major {
		case MajorBytes, MajorText:
			h, _, err := readHead(s.b[off:])
			if err != nil {
				return 0, err
			}
			if h.major != major || h.ai == 31 {
				return 0, ErrChunk
			}
			off += h.n
			if h.arg > uint64(len(s.b)-off) {
				return 0, ErrTruncated
			}
			off += int(h.arg)
		case MajorArray:
			if off, err = s.item(off, depth+1); err != nil {
				return 0, err
			}
		default: // MajorMap
			if off, err = s.item(off, depth+1); err != nil {
				return 0, err
			}
			if off, err = s.item(off, depth+1); err != nil {
				return 0, err
			}
		}
	}
}

// cidLinkPayload checks the byte string that follows tag 42 and returns the
// CID inside it (a view into b) and the byte string's length including its
// head.
func cidLinkPayload(b []byte, canonical bool) (cid.CID, int, error) {
	h, minimal, err := readHead(b)
	if err != nil {
		return nil, 0, err
	}
	if h.major != MajorBytes || h.ai == 31 {
		return nil, 0, ErrCIDLink
	}
	if !minimal && canonical {
		return nil, 0, ErrNonCanonicalInt
	}
	if h.arg > uint64(len(b)-h.n) {
		return nil, 0, ErrTruncated
	}
	end := h.n + int(h.arg)
	p := b[h.n:end]
	if len(p) < 2 || p[0] != 0 || len(p)-1 > cid.MaxLen {
		return nil, 0, ErrCIDLink
	}
	c, rest, err := cid.Parse(p[1:])
	if err != nil || len(rest) != 0 {
		return nil, 0, ErrCIDLink
	}
	return c, end, nil
}

// ReadCIDLink reads a CID link (tag 42 wrapping 0x00 ‖ CID) at the start of b
// and returns the CID, a view into b, and the link's encoded length. Head
// widths are not checked; Validate does that.
func ReadCIDLink(b []byte) (c cid.CID, n int, err error) {
	h, _, err := readHead(b)
	if err != nil {
		return nil, 0, err
	}
	if h.major != MajorTag || h.ai == 31 || h.arg != TagCID {
		return nil, 0, ErrTag
	}
	c, pn, err := cidLinkPayload(b[h.n:], false)
	if err != nil {
		return nil, 0, err
	}
	return c, h.n + pn, nil
}
