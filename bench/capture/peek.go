package capture

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Errors returned by PeekFrame.
var (
	// ErrFrameHeader: the frame's first CBOR item is not a header map.
	ErrFrameHeader = errors.New("capture: undecodable frame header")
	// ErrFrameBody: the frame's second CBOR item is not a body map.
	ErrFrameBody = errors.New("capture: undecodable frame body")
	// ErrFrameTrailing: bytes follow the body.
	ErrFrameTrailing = errors.New("capture: bytes after frame body")
)

// FrameInfo is the little a capture tool needs from a firehose frame.
type FrameInfo struct {
	Op    int64  // 1 for a message, -1 for an error
	Type  string // "#commit", "#identity", …; empty for errors
	Seq   int64  // 0 when the body has none
	DID   string // "did", or "repo" for #commit
	Time  string // the body's "time", as sent
	Error string // the error name of an op -1 frame
}

type frameHeader struct {
	Op int64  `cbor:"op"`
	T  string `cbor:"t"`
}

type frameBody struct {
	Seq   int64  `cbor:"seq"`
	DID   string `cbor:"did"`
	Repo  string `cbor:"repo"`
	Time  string `cbor:"time"`
	Error string `cbor:"error"`
}

// peekMode decodes with explicit nesting and size bounds; it is immutable.
var peekMode = func() cbor.DecMode {
	m, err := cbor.DecOptions{
		MaxNestedLevels:  32,
		MaxArrayElements: 1 << 16,
		MaxMapPairs:      1 << 16,
		IndefLength:      cbor.IndefLengthForbidden,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	}.DecMode()
	if err != nil {
		panic("BUG: capture: invalid CBOR decode options: " + err.Error())
	}
	return m
}()

// PeekFrame decodes a frame's header and the seq, DID, time and error name
// of its body, ignoring every other field. It is tooling, not validation:
// it does not check DAG-CBOR canonical form.
func PeekFrame(frame []byte) (FrameInfo, error) {
	var h frameHeader
	rest, err := peekMode.UnmarshalFirst(frame, &h)
	if err != nil {
		return FrameInfo{}, fmt.Errorf("%w: %w", ErrFrameHeader, err)
	}
	var b frameBody
	rest, err = peekMode.UnmarshalFirst(rest, &b)
	if err != nil {
		return FrameInfo{}, fmt.Errorf("%w: %w", ErrFrameBody, err)
	}
	if len(rest) != 0 {
		return FrameInfo{}, fmt.Errorf("%w: %d bytes", ErrFrameTrailing, len(rest))
	}
	did := b.DID
	if did == "" {
		did = b.Repo
	}
	return FrameInfo{Op: h.Op, Type: h.T, Seq: b.Seq, DID: did, Time: b.Time, Error: b.Error}, nil
}
