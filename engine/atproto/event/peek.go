package event

import "github.com/atrelay/relay/engine/atproto/dagcbor"

// This file is the cheap scan that dispatches a frame before the full
// decode: Peek reads the kind, seq, DID and error or #info name by walking
// the CBOR heads, without allocating, and checks only the structure it
// walks. Decode is the validation; Peek decides where a frame goes (which
// worker, which host's order, whether it is an error) at the rate frames
// arrive.

// maxPeekEntries bounds the map sizes Peek walks; the largest known body
// (#commit) has 12 fields, so anything far above is hostile.
const maxPeekEntries = 64

// Peeked is what a relay needs to dispatch a frame before the full decode:
// its kind, its upstream seq and the account it is about. Byte slices are
// views into the frame, valid until the frame is released.
type Peeked struct {
	Kind   Kind
	Seq    int64 // 0 when absent
	DID    []byte
	Name   []byte // error name (op -1) or #info name
	HasSeq bool
}

// Peek scans a frame's header and body for the kind, seq and DID without
// decoding it fully and without allocating. It checks only the structure it
// walks; Decode is the real validation. Bytes after the body are not read.
func Peek(frame []byte, p *Peeked) error {
	*p = Peeked{}
	kind, body, err := PeekHeader(frame)
	if err != nil {
		return err
	}
	p.Kind = kind
	if kind == KindUnknown {
		return nil
	}
	return peekBody(body, p)
}

// PeekHeader reads a frame's header by the rules Peek uses: a CBOR map of
// at most 64 entries (maxPeekEntries) with text keys in any order, an integer
// "op" (the last one wins) and, if present, a text "t". It returns the
// frame's kind (KindError for op -1, KindUnknown for an op or type this
// codec does not know) and the bytes after the header, without reading
// them and without allocating.
func PeekHeader(frame []byte) (Kind, []byte, error) {
	b := frame
	m, n, hn, err := dagcbor.ReadHead(b)
	if err != nil || m != dagcbor.MajorMap || n > maxPeekEntries {
		if n > maxPeekEntries {
			return KindUnknown, nil, ErrPeekTooLong
		}
		return KindUnknown, nil, ErrPeekHeader
	}
	b = b[hn:]
	var t []byte
	op, haveOp := int64(0), false
	for i := uint64(0); i < n; i++ {
		key, rest, err := readText(b)
		if err != nil {
			return KindUnknown, nil, ErrPeekHeader
		}
		b = rest
		switch string(key) {
		case "t":
			if t, b, err = readText(b); err != nil {
				return KindUnknown, nil, ErrPeekHeader
			}
		case "op":
			vm, v, vn, err := dagcbor.ReadHead(b)
			if err != nil || v > 1<<62 {
				return KindUnknown, nil, ErrPeekHeader
			}
			switch vm {
			case dagcbor.MajorUint:
				op = int64(v)
			case dagcbor.MajorNegInt:
				op = -1 - int64(v)
			default:
				return KindUnknown, nil, ErrPeekHeader
			}
			haveOp = true
			b = b[vn:]
		default:
			sn, err := dagcbor.WellformedFirst(b)
			if err != nil {
				return KindUnknown, nil, ErrPeekHeader
			}
			b = b[sn:]
		}
	}
	if !haveOp {
		return KindUnknown, nil, ErrPeekHeader
	}
	switch {
	case op == -1:
		return KindError, b, nil
	case op != 1:
		return KindUnknown, b, nil
	}
	return kindOf(t), b, nil
}

// kindOf is the kind a message header's "t" names.
func kindOf(t []byte) Kind {
	switch string(t) {
	case "#commit":
		return KindCommit
	case "#sync":
		return KindSync
	case "#identity":
		return KindIdentity
	case "#account":
		return KindAccount
	case "#info":
		return KindInfo
	}
	return KindUnknown
}

// peekBody reads the fields of p.Kind's body that Peeked holds.
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
	if p.Kind == KindCommit {
		didKey = "repo"
	}
	nameKey := "name"
	if p.Kind == KindError {
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
