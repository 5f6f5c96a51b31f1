package relay

import (
	"errors"

	"github.com/atrelay/relay/engine/dagcbor"
	"github.com/atrelay/relay/engine/event"
)

// Errors returned by Peek, one per way a frame fails the cheap dispatch scan.
var (
	// ErrPeekHeader: the header is not a CBOR map with a text "t" and an
	// integer "op".
	ErrPeekHeader = errors.New("relay: peek: malformed frame header")
	// ErrPeekBody: the body is not a CBOR map, or a field the dispatcher
	// reads (seq, repo, did, error, name) has the wrong type.
	ErrPeekBody = errors.New("relay: peek: malformed frame body")
	// ErrPeekTooLong: the header or body map has more entries than any
	// known message (maxPeekEntries).
	ErrPeekTooLong = errors.New("relay: peek: map has too many entries")
)

// maxPeekEntries bounds the map sizes Peek walks; the largest known body
// (#commit) has 12 fields, so anything far above is hostile.
const maxPeekEntries = 64

// Peeked is what the ingest path needs to dispatch a frame before the full
// decode: its kind, its upstream seq and the account it is about. Byte
// slices are views into the frame, valid until the frame is released.
type Peeked struct {
	Kind   event.Kind
	Seq    int64 // 0 when absent
	DID    []byte
	Name   []byte // error name (op -1) or #info name
	HasSeq bool
}

// Peek scans a frame's header and body for the kind, seq and DID without
// decoding it fully and without allocating. It checks only the structure it
// walks; the worker's full decode is the real validation.
func Peek(frame []byte, p *Peeked) error {
	*p = Peeked{}
	body, err := peekHeader(frame, p)
	if err != nil {
		return err
	}
	if p.Kind == event.KindUnknown {
		return nil
	}
	return peekBody(body, p)
}

func peekHeader(b []byte, p *Peeked) ([]byte, error) {
	m, n, hn, err := dagcbor.ReadHead(b)
	if err != nil || m != dagcbor.MajorMap || n > maxPeekEntries {
		if n > maxPeekEntries {
			return nil, ErrPeekTooLong
		}
		return nil, ErrPeekHeader
	}
	b = b[hn:]
	var t []byte
	op, haveOp := int64(0), false
	for i := uint64(0); i < n; i++ {
		key, rest, err := readText(b)
		if err != nil {
			return nil, ErrPeekHeader
		}
		b = rest
		switch string(key) {
		case "t":
			if t, b, err = readText(b); err != nil {
				return nil, ErrPeekHeader
			}
		case "op":
			vm, v, vn, err := dagcbor.ReadHead(b)
			if err != nil || v > 1<<62 {
				return nil, ErrPeekHeader
			}
			switch vm {
			case dagcbor.MajorUint:
				op = int64(v)
			case dagcbor.MajorNegInt:
				op = -1 - int64(v)
			default:
				return nil, ErrPeekHeader
			}
			haveOp = true
			b = b[vn:]
		default:
			sn, err := dagcbor.WellformedFirst(b)
			if err != nil {
				return nil, ErrPeekHeader
			}
			b = b[sn:]
		}
	}
	if !haveOp {
		return nil, ErrPeekHeader
	}
	switch {
	case op == -1:
		p.Kind = event.KindError
	case op != 1:
		p.Kind = event.KindUnknown
	default:
		p.Kind = kindOf(t)
	}
	return b, nil
}

func kindOf(t []byte) event.Kind {
	switch string(t) {
	case "#commit":
		return event.KindCommit
	case "#sync":
		return event.KindSync
	case "#identity":
		return event.KindIdentity
	case "#account":
		return event.KindAccount
	case "#info":
		return event.KindInfo
	}
	return event.KindUnknown
}

func peekBody(b []byte, p *Peeked) error {
	m, n, hn, err := dagcbor.ReadHead(b)
	if err != nil || m != dagcbor.MajorMap {
		return ErrPeekBody
	}
	if n > maxPeekEntries {
		return ErrPeekTooLong
	}
	b = b[hn:]
	didKey := "did"
	if p.Kind == event.KindCommit {
		didKey = "repo"
	}
	nameKey := "name"
	if p.Kind == event.KindError {
		nameKey = "error"
	}
	for i := uint64(0); i < n; i++ {
		key, rest, err := readText(b)
		if err != nil {
			return ErrPeekBody
		}
		b = rest
		switch string(key) {
		case "seq":
			vm, v, vn, err := dagcbor.ReadHead(b)
			if err != nil || vm != dagcbor.MajorUint || v > 1<<62 {
				return ErrPeekBody
			}
			p.Seq, p.HasSeq = int64(v), true
			b = b[vn:]
			continue
		case didKey:
			if p.DID, b, err = readText(b); err != nil {
				return ErrPeekBody
			}
			continue
		case nameKey:
			if p.Name, b, err = readText(b); err != nil {
				return ErrPeekBody
			}
			continue
		}
		sn, err := dagcbor.WellformedFirst(b)
		if err != nil {
			return ErrPeekBody
		}
		b = b[sn:]
	}
	return nil
}

// readText reads one definite text string and returns it and the rest.
func readText(b []byte) (s, rest []byte, err error) {
	m, l, hn, err := dagcbor.ReadHead(b)
	if err != nil {
		return nil, nil, err
	}
	if m != dagcbor.MajorText || l > uint64(len(b)-hn) {
		return nil, nil, ErrPeekBody
	}
	end := hn + int(l)
	return b[hn:end], b[end:], nil
}
