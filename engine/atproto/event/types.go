package event

import (
	"errors"
	"fmt"

	"github.com/atrelay/relay/engine/atproto/cid"
)

// Kind is the message type of a decoded frame.
type Kind uint8

// The kinds of frame. KindUnknown covers unknown op values and unknown or
// legacy t values; such frames are skipped, not treated as errors.
const (
	KindUnknown Kind = iota
	KindCommit
	KindSync
	KindIdentity
	KindAccount
	KindInfo
	KindError
)

// String returns the header t value of k ("#commit", ...), "error" for
// error frames and "unknown" otherwise; usable as a metric label.
func (k Kind) String() string {
	switch k {
	case KindCommit:
		return "#commit"
	case KindSync:
		return "#sync"
	case KindIdentity:
		return "#identity"
	case KindAccount:
		return "#account"
	case KindInfo:
		return "#info"
	case KindError:
		return "error"
	default:
		return "unknown"
	}
}

// HasSeq reports whether frames of kind k carry a seq (persisted events).
func (k Kind) HasSeq() bool {
	return k >= KindCommit && k <= KindAccount
}

// MaxFrameBytes is the largest subscribeRepos frame (header and body) the
// relay reads, stores or sends (spec §11, §9.2: the reference relay's read
// limit). The upstream reader, the store and the capture recorder use this
// one constant.
const MaxFrameBytes = 5_000_000

// Default limits (spec §11). Zero fields of Limits mean these.
const (
	DefaultMaxFrameBytes        = MaxFrameBytes
	DefaultMaxCommitBlocksBytes = 2_000_000
	DefaultMaxOps               = 200
	DefaultMaxSyncBlocksBytes   = 10_000
)

// Limits bound what Decode accepts. A zero field means its default, never
// "unlimited".
type Limits struct {
	MaxFrameBytes        int // whole frame, checked before decoding; default 5,000,000
	MaxCommitBlocksBytes int // #commit.blocks; default 2,000,000
	MaxOps               int // #commit.ops entries; default 200
	MaxSyncBlocksBytes   int // #sync.blocks; default 10,000 (lexicon maxLength)
}

func (l Limits) withDefaults() Limits {
	if l.MaxFrameBytes <= 0 {
		l.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if l.MaxCommitBlocksBytes <= 0 {
		l.MaxCommitBlocksBytes = DefaultMaxCommitBlocksBytes
	}
	if l.MaxOps <= 0 {
		l.MaxOps = DefaultMaxOps
	}
	if l.MaxSyncBlocksBytes <= 0 {
		l.MaxSyncBlocksBytes = DefaultMaxSyncBlocksBytes
	}
	return l
}

// Errors, one per reason a frame is rejected. All of them mean "malformed
// frame"; field-level ones arrive wrapped in a *FieldError.
var (
	ErrFrameTooLarge  = errors.New("event: frame larger than Limits.MaxFrameBytes")
	ErrCBOR           = errors.New("event: frame is not two DAG-CBOR items")
	ErrTrailing       = errors.New("event: bytes after the body")
	ErrHeader         = errors.New("event: malformed header")
	ErrBody           = errors.New("event: body is not a decodable map")
	ErrDupKey         = errors.New("event: duplicate map key")
	ErrMissingField   = errors.New("event: required field missing")
	ErrFieldType      = errors.New("event: field has the wrong type")
	ErrTooManyOps     = errors.New("event: more ops than Limits.MaxOps")
	ErrBlocksTooLarge = errors.New("event: blocks larger than its limit")
	ErrNoSeq          = errors.New("event: message kind has no seq")
	ErrSeq            = errors.New("event: seq must be positive")
	ErrNotRewritable  = errors.New("event: frame header is not a canonical #commit, #sync, #identity or #account header")
	ErrNoSeqField     = errors.New("event: body has no integer seq field")

	// Peek and PeekHeader's: a header that is not a map with an integer
	// "op" and, if present, a text "t"; a body that is not a map or has a
	// field Peeked holds with the wrong type; a map with more entries than
	// any known message (maxPeekEntries).
	ErrPeekHeader  = errors.New("event: peek: malformed frame header")
	ErrPeekBody    = errors.New("event: peek: malformed frame body")
	ErrPeekTooLong = errors.New("event: peek: map has too many entries")
)

// FieldError reports a problem with one field of a body.
type FieldError struct {
	Kind  Kind   // message type of the body
	Field string // field name, "ops[i].name" inside ops
	Err   error  // ErrMissingField, ErrFieldType, ErrTooManyOps or ErrBlocksTooLarge
}

// Error implements error.
func (e *FieldError) Error() string {
	return fmt.Sprintf("event: %s.%s: %v", e.Kind, e.Field, e.Err)
}

// Unwrap returns the reason.
func (e *FieldError) Unwrap() error { return e.Err }

// Commit is a #commit body. Byte slices and CIDs are views into the frame.
type Commit struct {
	Seq    int64
	Repo   []byte  // DID (text)
	Commit cid.CID // CID of the signed commit block
	Rev    []byte  // TID (text)
	// Since is the previous rev; nil when the wire value is null (first
	// commit). The field itself is required.
	Since  []byte
	Blocks []byte // CAR slice
	Ops    []Op
	// PrevData is the previous MST root; nil when the key is absent (the
	// protocol never sends null here).
	PrevData cid.CID
	Blobs    []cid.CID // deprecated; decoded when present, empty when absent or null
	TooBig   bool      // deprecated; false when absent
	Rebase   bool      // deprecated; false when absent
	Time     []byte    // datetime (text)
}

// Op is one entry of #commit.ops.
type Op struct {
	Action []byte // "create", "update" or "delete" (not checked here)
	Path   []byte // collection/rkey
	// CID is the new record CID; nil when the wire value is null (delete).
	CID cid.CID
	// Prev is the previous record CID; nil when the key is absent (create,
	// or legacy producers).
	Prev cid.CID
}

// Sync is a #sync body.
type Sync struct {
	Seq    int64
	DID    []byte
	Rev    []byte
	Blocks []byte // CAR holding the commit block
	Time   []byte
}

// Identity is an #identity body.
type Identity struct {
	Seq    int64
	DID    []byte
	Time   []byte
	Handle []byte // nil when absent
}

// Account is an #account body.
type Account struct {
	Seq    int64
	DID    []byte
	Time   []byte
	Active bool
	Status []byte // nil when absent
}

// Info is an #info body (not persisted, no seq).
type Info struct {
	Name    []byte
	Message []byte // nil when absent
}

// ErrorFrame is the body of an op -1 frame.
type ErrorFrame struct {
	Error   []byte // error name, e.g. "FutureCursor"
	Message []byte // nil when absent
}

// Message is one decoded frame. Only the field selected by Kind is
// meaningful. A Message is owned by its caller; Decode overwrites it and
// reuses its slices' capacity.
type Message struct {
	Kind Kind
	// Type is the header's t as sent (a view; nil for error frames or when
	// absent). For KindUnknown it names what was skipped.
	Type []byte
	// Op is the header's op value.
	Op int64

	Commit   Commit
	Sync     Sync
	Identity Identity
	Account  Account
	Info     Info
	Error    ErrorFrame
}

// Seq returns the seq of a persisted event and false for other kinds.
func (m *Message) Seq() (int64, bool) {
	switch m.Kind {
	case KindCommit:
		return m.Commit.Seq, true
	case KindSync:
		return m.Sync.Seq, true
	case KindIdentity:
		return m.Identity.Seq, true
	case KindAccount:
		return m.Account.Seq, true
	default:
		return 0, false
	}
}

// reset empties m but keeps the capacity of its Ops and Blobs. Only the
// used part is cleared: Decode keeps [len, cap) zeroed, so old views never
// pin a released frame.
func (m *Message) reset() {
	clear(m.Commit.Ops)
	clear(m.Commit.Blobs)
	ops, blobs := m.Commit.Ops[:0], m.Commit.Blobs[:0]
	*m = Message{}
	m.Commit.Ops = ops
	m.Commit.Blobs = blobs
}
