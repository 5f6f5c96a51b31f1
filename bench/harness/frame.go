package harness

import (
	"encoding/binary"
	"errors"
)

// Errors of scanFrame, one per way a frame can be unreadable.
var (
	// ErrFrameTruncated: a CBOR item runs past the end of the frame.
	ErrFrameTruncated = errors.New("harness: frame truncated")
	// ErrFrameShape: the header or body is not a map with text keys.
	ErrFrameShape = errors.New("harness: frame header or body is not a text-keyed map")
	// ErrFrameField: a field the harness reads has the wrong CBOR type.
	ErrFrameField = errors.New("harness: frame field of the wrong type")
	// ErrFrameIndefinite: an indefinite-length item (forbidden in DAG-CBOR).
	ErrFrameIndefinite = errors.New("harness: indefinite-length CBOR item")
	// ErrFrameReserved: a reserved CBOR additional-information value.
	ErrFrameReserved = errors.New("harness: reserved CBOR encoding")
	// ErrFrameDepth: nesting deeper than maxFrameDepth.
	ErrFrameDepth = errors.New("harness: CBOR nesting too deep")
	// ErrFrameSeq: a seq that is not positive (spec §9.3: seq > 0).
	ErrFrameSeq = errors.New("harness: frame seq not positive")
	// ErrFrameTrailing: bytes follow the body.
	ErrFrameTrailing = errors.New("harness: bytes after frame body")
)

// maxFrameDepth bounds nesting while skipping fields the harness ignores;
// firehose bodies nest a few levels (ops → op → cid tag).
const maxFrameDepth = 32

// frameInfo is what a consumer needs from a frame. Its byte slices alias
// the frame and are valid until the consumer's read buffer is reused.
type frameInfo struct {
	op     int64
	typ    []byte // header "t", e.g. "#commit"; nil for errors
	seq    int64
	hasSeq bool
	did    []byte // body "repo" (#commit) or "did"
	rev    []byte // body "rev" (#commit, #sync)
	errStr []byte // body "error" of an op -1 frame
}

// isCommit reports whether the frame is a #commit message.
func (f *frameInfo) isCommit() bool { return f.op == 1 && string(f.typ) == "#commit" }

// scanFrame reads a firehose frame's header and the few body fields the
// harness checks, skipping everything else, without allocating. It is
// tooling: it checks structure, not DAG-CBOR canonical form.
func scanFrame(b []byte, fi *frameInfo) error {
	*fi = frameInfo{}
	rest, err := scanMap(b, func(key, val []byte) error {
		switch string(key) {
		case "op":
			v, ok := cborInt(val)
			if !ok {
				return ErrFrameField
			}
			fi.op = v
		case "t":
			s, ok := cborText(val)
			if !ok {
				return ErrFrameField
			}
			fi.typ = s
		}
		return nil
	})
	if err != nil {
		return err
	}
	rest, err = scanMap(rest, func(key, val []byte) error {
		var ok bool
		switch string(key) {
		case "seq":
			fi.seq, ok = cborInt(val)
			fi.hasSeq = ok
		case "repo", "did":
			fi.did, ok = cborText(val)
		case "rev":
			fi.rev, ok = cborText(val)
		case "error":
			fi.errStr, ok = cborText(val)
		default:
			return nil
		}
		if !ok {
			return ErrFrameField
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return ErrFrameTrailing
	}
	return nil
}

// scanMap walks a definite-length map with text keys, calling fn with each
// key and the encoded bytes of its value, and returns the bytes after it.
func scanMap(b []byte, fn func(key, val []byte) error) ([]byte, error) {
	major, n, rest, err := cborHead(b)
	if err != nil {
		return nil, err
	}
	if major != 5 {
		return nil, ErrFrameShape
	}
	for i := uint64(0); i < n; i++ {
		km, kn, kr, err := cborHead(rest)
		if err != nil {
			return nil, err
		}
		if km != 3 {
			return nil, ErrFrameShape
		}
		if kn > uint64(len(kr)) {
			return nil, ErrFrameTruncated
		}
		key := kr[:kn]
		val := kr[kn:]
		after, err := skipItem(val, 0)
		if err != nil {
			return nil, err
		}
		if err := fn(key, val[:len(val)-len(after)]); err != nil {
			return nil, err
		}
		rest = after
	}
	return rest, nil
}

// cborHead decodes an item's initial byte and argument.
func cborHead(b []byte) (major byte, arg uint64, rest []byte, err error) {
	if len(b) == 0 {
		return 0, 0, nil, ErrFrameTruncated
	}
	major, info := b[0]>>5, b[0]&0x1f
	b = b[1:]
	switch {
	case info < 24:
		return major, uint64(info), b, nil
	case info == 24:
		if len(b) < 1 {
			return 0, 0, nil, ErrFrameTruncated
		}
		return major, uint64(b[0]), b[1:], nil
	case info == 25:
		if len(b) < 2 {
			return 0, 0, nil, ErrFrameTruncated
		}
		return major, uint64(binary.BigEndian.Uint16(b)), b[2:], nil
	case info == 26:
		if len(b) < 4 {
			return 0, 0, nil, ErrFrameTruncated
		}
		return major, uint64(binary.BigEndian.Uint32(b)), b[4:], nil
	case info == 27:
		if len(b) < 8 {
			return 0, 0, nil, ErrFrameTruncated
		}
		return major, binary.BigEndian.Uint64(b), b[8:], nil
	case info == 31:
		return 0, 0, nil, ErrFrameIndefinite
	default:
		return 0, 0, nil, ErrFrameReserved
	}
}

// skipItem returns the bytes after one complete item.
func skipItem(b []byte, depth int) ([]byte, error) {
	if depth > maxFrameDepth {
		return nil, ErrFrameDepth
	}
	major, n, rest, err := cborHead(b)
	if err != nil {
		return nil, err
	}
	switch major {
	case 0, 1, 7: // integers; simple values and floats carry no payload beyond the head
		return rest, nil
	case 2, 3:
		if n > uint64(len(rest)) {
			return nil, ErrFrameTruncated
		}
		return rest[n:], nil
	case 4, 5:
		items := n
		if major == 5 {
			if n > uint64(len(rest)) { // every pair takes at least two bytes
				return nil, ErrFrameTruncated
			}
			items = 2 * n
		}
		if items > uint64(len(rest)) { // every item takes at least one byte
			return nil, ErrFrameTruncated
		}
		for i := uint64(0); i < items; i++ {
			if rest, err = skipItem(rest, depth+1); err != nil {
				return nil, err
			}
		}
		return rest, nil
	default: // 6: a tag, then its item
		return skipItem(rest, depth+1)
	}
}

// cborInt decodes an encoded integer that fits an int64.
func cborInt(b []byte) (int64, bool) {
	major, n, rest, err := cborHead(b)
	if err != nil || len(rest) != 0 || n > 1<<63-1 {
		return 0, false
	}
	switch major {
	case 0:
		return int64(n), true
	case 1:
		return -1 - int64(n), true
	}
	return 0, false
}

// cborText returns an encoded text string's bytes.
func cborText(b []byte) ([]byte, bool) {
	major, n, rest, err := cborHead(b)
	if err != nil || major != 3 || n != uint64(len(rest)) {
		return nil, false
	}
	return rest, true
}
