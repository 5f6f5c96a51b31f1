package event

import (
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/dagcbor"
)

// Field views. fxamacker/cbor hands UnmarshalCBOR a sub-slice of the frame
// (never a copy), so each view keeps a slice into the frame instead of
// copying. Decode runs dagcbor.Envelope over the whole frame first, so the
// bytes a view receives are one complete, valid DAG-CBOR item (UTF-8 checked,
// CID links well formed); a view only checks the item's type. A type
// mismatch is recorded in bad rather than returned, so that Decode can name
// the field in its FieldError. Owned by the Decoder's wire structs.

// state records presence for one field.
type state uint8

const (
	absent  state = iota
	present       // a value of the expected type
	null          // CBOR null
	bad           // any other type
)

// intField views an integer field.
type intField struct {
	v  int64
	st state
}

// UnmarshalCBOR implements cbor.Unmarshaler.
func (f *intField) UnmarshalCBOR(b []byte) error {
	m, arg, _, err := dagcbor.ReadHead(b)
	switch {
	case err != nil || (m != dagcbor.MajorUint && m != dagcbor.MajorNegInt):
		f.st = bad
	case m == dagcbor.MajorUint:
		f.v, f.st = int64(arg), present // Envelope bounds arg to int64
	default:
		f.v, f.st = -1-int64(arg), present
	}
	return nil
}

// boolField views a boolean field.
type boolField struct {
	v  bool
	st state
}

// UnmarshalCBOR implements cbor.Unmarshaler.
func (f *boolField) UnmarshalCBOR(b []byte) error {
	switch b[0] {
	case 0xf4:
		f.v, f.st = false, present
	case 0xf5:
		f.v, f.st = true, present
	case 0xf6:
		f.st = null
	default:
		f.st = bad
	}
	return nil
}

// strField views a text string (text) or byte string (bytes) field.
type strField struct {
	v  []byte
	st state
}

func (f *strField) set(b []byte, want dagcbor.Major) {
	if len(b) > 0 && b[0] == 0xf6 {
		f.st = null
		return
	}
	m, arg, n, err := dagcbor.ReadHead(b)
	if err != nil || m != want || arg != uint64(len(b)-n) {
		f.st = bad
		return
	}
	f.v, f.st = b[n:len(b):len(b)], present
}

// textField views a text string field.
type textField struct{ strField }

// UnmarshalCBOR implements cbor.Unmarshaler.
func (f *textField) UnmarshalCBOR(b []byte) error {
	f.set(b, dagcbor.MajorText)
	return nil
}

// bytesField views a byte string field.
type bytesField struct{ strField }

// UnmarshalCBOR implements cbor.Unmarshaler.
func (f *bytesField) UnmarshalCBOR(b []byte) error {
	f.set(b, dagcbor.MajorBytes)
	return nil
}

// linkField views a CID link field.
type linkField struct {
	v  cid.CID
	st state
}

// UnmarshalCBOR implements cbor.Unmarshaler.
func (f *linkField) UnmarshalCBOR(b []byte) error {
	if len(b) > 0 && b[0] == 0xf6 {
		f.st = null
		return nil
	}
	c, n, err := dagcbor.ReadCIDLink(b)
	if err != nil || n != len(b) {
		f.st = bad
		return nil
	}
	f.v, f.st = c, present
	return nil
}

// arrayField keeps the raw bytes of an array field for a second pass.
type arrayField struct {
	raw   []byte
	count uint64
	st    state
}

// UnmarshalCBOR implements cbor.Unmarshaler.
func (f *arrayField) UnmarshalCBOR(b []byte) error {
	if len(b) > 0 && b[0] == 0xf6 {
		f.st = null
		return nil
	}
	m, n, _, err := dagcbor.ReadHead(b)
	if err != nil || m != dagcbor.MajorArray {
		f.st = bad
		return nil
	}
	f.raw, f.count, f.st = b, n, present
	return nil
}

// Wire structs: the shapes fxamacker fills. Case-sensitive names; unknown
// keys are skipped.

type headerWire struct {
	Op intField  `cbor:"op"`
	T  textField `cbor:"t"`
}

type commitWire struct {
	Seq      intField   `cbor:"seq"`
	Repo     textField  `cbor:"repo"`
	Commit   linkField  `cbor:"commit"`
	Rev      textField  `cbor:"rev"`
	Since    textField  `cbor:"since"`
	Blocks   bytesField `cbor:"blocks"`
	Ops      arrayField `cbor:"ops"`
	PrevData linkField  `cbor:"prevData"`
	Blobs    arrayField `cbor:"blobs"`
	TooBig   boolField  `cbor:"tooBig"`
	Rebase   boolField  `cbor:"rebase"`
	Time     textField  `cbor:"time"`
}

type opWire struct {
	Action textField `cbor:"action"`
	Path   textField `cbor:"path"`
	CID    linkField `cbor:"cid"`
	Prev   linkField `cbor:"prev"`
}

type syncWire struct {
	Seq    intField   `cbor:"seq"`
	DID    textField  `cbor:"did"`
	Rev    textField  `cbor:"rev"`
	Blocks bytesField `cbor:"blocks"`
	Time   textField  `cbor:"time"`
}

type identityWire struct {
	Seq    intField  `cbor:"seq"`
	DID    textField `cbor:"did"`
	Time   textField `cbor:"time"`
	Handle textField `cbor:"handle"`
}

type accountWire struct {
	Seq    intField  `cbor:"seq"`
	DID    textField `cbor:"did"`
	Time   textField `cbor:"time"`
	Active boolField `cbor:"active"`
	Status textField `cbor:"status"`
}

type infoWire struct {
	Name    textField `cbor:"name"`
	Message textField `cbor:"message"`
}

type errorWire struct {
	Error   textField `cbor:"error"`
	Message textField `cbor:"message"`
}
