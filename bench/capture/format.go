package capture

import (
	"encoding/json"
	"errors"
	"time"
)

// Wire constants of the capture format; see the package doc. They are part
// of the file format: never change them, add a version instead.
const (
	// Version is the format version this package writes and reads.
	Version = 1

	bodyMagic     = "RLYCAP" // followed by a big-endian uint16 version
	snapshotMagic = "RLYIDS" // followed by a big-endian uint16 version
	footerMagic   = "RLYCAPFT"

	// skippableMagic is the zstd skippable-frame magic 0x184D2A5E in
	// little-endian order; zstd tools skip the footer because of it.
	skippableMagic = "\x5e\x2a\x4d\x18"
	footerPayload  = 16                    // uint64 LE snapshot offset + footerMagic
	footerSize     = 4 + 4 + footerPayload // magic, uint32 LE size, payload
)

// Limits the reader enforces; exceeding one is ErrLimit (or ErrFrameTooLarge).
const (
	// MaxFrameBytes is the largest frame a capture may hold. Relays drop
	// upstream frames above 5,000,000 bytes (spec §9.2); this leaves room.
	MaxFrameBytes = 16 << 20
	// MaxSources is the largest number of sources in one header.
	MaxSources = 1 << 16
	// MaxNoteBytes bounds the free-form note.
	MaxNoteBytes = 64 << 10
	// MaxNameBytes bounds a source URL or hostname.
	MaxNameBytes = 4 << 10
	// MaxDIDBytes bounds a DID in the snapshot (spec §2.1 allows 2 KiB).
	MaxDIDBytes = 2 << 10
	// MaxDocBytes bounds one DID document in the snapshot.
	MaxDocBytes = 1 << 20
	// MaxDocs bounds the number of DID documents in the snapshot.
	MaxDocs = 1 << 24
	// maxSeq keeps seqs inside the range the spec allows (below 2^53, §9.3).
	maxSeq = 1<<53 - 1
)

// CountUnknown marks a count the writer did not know in advance.
const CountUnknown = -1

// Errors returned by the reader and writer. Each is wrapped with detail;
// compare with errors.Is.
var (
	// ErrBadMagic: the stream does not start with a capture header.
	ErrBadMagic = errors.New("capture: not a capture file (bad magic)")
	// ErrVersion: the file was written by a newer (or unknown) format version.
	ErrVersion = errors.New("capture: unsupported format version")
	// ErrTruncated: the stream ends before the trailer or snapshot.
	ErrTruncated = errors.New("capture: truncated")
	// ErrCorrupt: the bytes are not a valid capture (bad zstd, bad varint, bad section).
	ErrCorrupt = errors.New("capture: corrupt")
	// ErrFrameTooLarge: a record's frame exceeds MaxFrameBytes.
	ErrFrameTooLarge = errors.New("capture: frame too large")
	// ErrLimit: a header or snapshot field exceeds its limit.
	ErrLimit = errors.New("capture: limit exceeded")
	// ErrSourceIndex: a record names a source the header does not list.
	ErrSourceIndex = errors.New("capture: record source index out of range")
	// ErrSeqRange: a record's seq is negative or not below 2^53.
	ErrSeqRange = errors.New("capture: seq out of range")
	// ErrCountMismatch: the records read disagree with the trailer or header counts.
	ErrCountMismatch = errors.New("capture: count mismatch")
	// ErrNoFooter: a random-access open found no footer at the end of the file.
	ErrNoFooter = errors.New("capture: missing footer")
	// ErrSnapshotNotReached: Snapshot was called before Next returned io.EOF.
	ErrSnapshotNotReached = errors.New("capture: snapshot read before the records were exhausted")
	// ErrClosed: a writer or iterator was used after Close.
	ErrClosed = errors.New("capture: closed")
)

// Header describes a capture. It is written once at the start of the file.
type Header struct {
	// Created is when the capture started; record times are delta-encoded from it.
	Created time.Time
	// Sources lists where the frames came from; Record.Source indexes it.
	Sources []Source
	// Note is free-form text (what, why, how it was made).
	Note string
}

// Source is one upstream the frames were recorded from.
type Source struct {
	// URL is what was dialed, e.g. ws://pds.example:2583/xrpc/com.atproto.sync.subscribeRepos?cursor=0.
	URL string
	// Hostname is the host's name as a relay stores it (host[:port]).
	Hostname string
	// Frames is this source's record count when known up front, or CountUnknown.
	// A known count is checked against the records at the end of the stream.
	Frames int64
}

// Record is one captured WebSocket binary message.
type Record struct {
	// Source indexes Header.Sources.
	Source int
	// RecvTime is when the message was received, in Unix nanoseconds.
	RecvTime int64
	// Seq is the frame's upstream seq, or 0 for frames without one (#info, errors).
	Seq int64
	// Frame is the message, byte for byte. From a reader it aliases the
	// reader's buffer and is valid only until the next call to Next.
	Frame []byte
}

// Snapshot maps each DID to the DID document (JSON) that resolved for it,
// so a capture can be replayed and verified offline.
type Snapshot map[string]json.RawMessage

// Iterator streams the records of a capture in order. Implementations are
// for use by one goroutine.
type Iterator interface {
	// Next returns the next record, or io.EOF after the last one. The
	// record's Frame is valid only until the next call.
	Next() (Record, error)
	// Close releases the iterator's file and decoder.
	Close() error
}
