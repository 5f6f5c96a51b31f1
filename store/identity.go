package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/atrelay/relay/engine/atproto/syntax"
	"github.com/cockroachdb/pebble/v2"
)

// This file holds the identity tier's rows: resolved DID documents kept
// across restarts so a restarted relay does not ask the PLC directory for
// every active account again. engine/identity decides what to keep and
// for how long; the store only encodes, reads and writes rows.
//
// Rows are written with pebble.NoSync, outside the writer lock: losing the
// last few in a crash costs a re-resolution, never correctness, and the
// WAL is one sequential log, so a row committed before an event batch is
// durable once that batch is (its fsync covers everything before it).
// Pebble checksums WAL records and table blocks and replays the WAL only
// up to its first torn record, so a row is either absent or whole after a
// crash; decodeIdentity still checks every length and code.

// prefixIdentity keys the identity tier: 0A did → identity row.
const prefixIdentity byte = 0x0a

// identityFixedLen is the fixed part of an identity value.
const identityFixedLen = 39

// MaxHandleBytes bounds a stored handle (a DNS name).
const MaxHandleBytes = syntax.MaxHandleLen

// KeyType names the curve of a stored signing key. The values are on disk:
// never renumber.
type KeyType uint8

// The key types.
const (
	KeyP256 KeyType = 1 // NIST P-256
	KeyK256 KeyType = 2 // secp256k1
)

// IdentityRecord is one identity row: what the relay needs from a DID's
// document and when it was fetched. Decoding reuses the byte slices.
type IdentityRecord struct {
	ResolvedAt int64    // Unix seconds the document was fetched
	KeyType    KeyType  // curve of Key
	Key        [33]byte // SEC1 compressed point of the #atproto key
	PDSHost    []byte   // normalized #atproto_pds host, 1…MaxHostnameBytes
	Handle     []byte   // claimed handle, may be empty; at most MaxHandleBytes
}

func (r *IdentityRecord) validate() error {
	switch {
	case r.KeyType != KeyP256 && r.KeyType != KeyK256:
		return fmt.Errorf("%w: identity key type %d", ErrCorrupt, r.KeyType)
	case r.Key[0] != 2 && r.Key[0] != 3:
		return fmt.Errorf("%w: identity key prefix %#x", ErrCorrupt, r.Key[0])
	case len(r.PDSHost) == 0 || len(r.PDSHost) > MaxHostnameBytes:
		return fmt.Errorf("%w: identity host of %d bytes", ErrCorrupt, len(r.PDSHost))
	case len(r.Handle) > MaxHandleBytes:
		return fmt.Errorf("%w: identity handle of %d bytes", ErrCorrupt, len(r.Handle))
	case r.ResolvedAt < 0 || r.ResolvedAt > 1<<32-1:
		return fmt.Errorf("%w: identity time %d", ErrCorrupt, r.ResolvedAt)
	}
	return nil
}

// appendIdentityValue encodes r (see the package doc).
func appendIdentityValue(dst []byte, r *IdentityRecord) []byte {
	dst = append(dst, valueVersion)
	dst = binary.BigEndian.AppendUint32(dst, uint32(r.ResolvedAt))
	dst = append(dst, byte(r.KeyType))
	dst = append(dst, r.Key[:]...)
	dst = binary.AppendUvarint(dst, uint64(len(r.PDSHost)))
	dst = append(dst, r.PDSHost...)
	dst = binary.AppendUvarint(dst, uint64(len(r.Handle)))
	return append(dst, r.Handle...)
}

// decodeIdentity decodes an identity value into dst, reusing its slices.
// Any inconsistency is ErrCorrupt.
func decodeIdentity(v []byte, dst *IdentityRecord) error {
	if len(v) < identityFixedLen+2 || v[0] != valueVersion {
		return fmt.Errorf("%w: identity value of %d bytes", ErrCorrupt, len(v))
	}
	dst.ResolvedAt = int64(binary.BigEndian.Uint32(v[1:5]))
	dst.KeyType = KeyType(v[5])
	copy(dst.Key[:], v[6:39])
	rest := v[identityFixedLen:]
	var ok bool
	if dst.PDSHost, rest, ok = cutUvarintBytes(dst.PDSHost[:0], rest); !ok {
		return fmt.Errorf("%w: identity host", ErrCorrupt)
	}
	if dst.Handle, rest, ok = cutUvarintBytes(dst.Handle[:0], rest); !ok || len(rest) != 0 {
		return fmt.Errorf("%w: identity handle", ErrCorrupt)
	}
	return dst.validate()
}

// cutUvarintBytes appends the length-prefixed bytes at the start of b to
// dst and returns the rest of b.
func cutUvarintBytes(dst, b []byte) ([]byte, []byte, bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return dst, nil, false
	}
	return append(dst, b[w:w+int(n)]...), b[w+int(n):], true
}

func appendIdentityKey(dst, did []byte) []byte {
	return appendBytesKey(dst, prefixIdentity, did)
}

// checkIdentityDID rejects DIDs no row may be keyed by.
func checkIdentityDID(did []byte) error {
	if len(did) == 0 || len(did) > MaxDIDBytes {
		return fmt.Errorf("%w: DID of %d bytes", ErrTooLong, len(did))
	}
	return nil
}

// checkIdentityWritable returns why no identity write may start. Identity
// writes do not take the writer lock, so they see a failed commit only
// through Pebble's fatal report.
func (s *Store) checkIdentityWritable() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if f := s.fatal.Load(); f != nil {
		return fmt.Errorf("%w: %w", ErrFailed, f)
	}
	return nil
}

// GetIdentity reads did's identity row into dst. A row that does not
// decode is reported as ErrCorrupt (the caller may delete it). Like every
// read it must not race with Close. Safe for concurrent use.
func (s *Store) GetIdentity(did []byte, dst *IdentityRecord) (bool, error) {
	if s.closed.Load() {
		return false, ErrClosed
	}
	if err := checkIdentityDID(did); err != nil {
		return false, err
	}
	var kb [1 + 64]byte
	v, closer, err := s.db.Get(appendIdentityKey(kb[:0], did))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: read identity: %w", err)
	}
	defer closer.Close()
	if err := decodeIdentity(v, dst); err != nil {
		return false, fmt.Errorf("store: identity %q: %w", did, err)
	}
	return true, nil
}

// DeleteIdentity removes did's identity row at once (NoSync): it is in
// the WAL, ahead of every batch committed after it, when this returns.
// Safe for concurrent use.
func (s *Store) DeleteIdentity(did []byte) error {
	if err := s.checkIdentityWritable(); err != nil {
		return err
	}
	if err := checkIdentityDID(did); err != nil {
		return err
	}
	var kb [1 + 64]byte
	if err := s.db.Delete(appendIdentityKey(kb[:0], did), pebble.NoSync); err != nil {
		return fmt.Errorf("store: delete identity: %w", err)
	}
	return nil
}

// IdentityBatch collects identity row writes for one NoSync commit. It is
// reused after Commit. Not safe for concurrent use.
type IdentityBatch struct {
	s        *Store
	b        *pebble.Batch
	key, val []byte
}

// NewIdentityBatch returns an empty batch; Close it when done.
func (s *Store) NewIdentityBatch() *IdentityBatch {
	return &IdentityBatch{s: s, b: s.db.NewBatch()}
}

// Set stores r as did's row, replacing any previous one.
func (b *IdentityBatch) Set(did []byte, r *IdentityRecord) error {
	if err := checkIdentityDID(did); err != nil {
		return err
	}
	if err := r.validate(); err != nil {
		return err
	}
	b.key = appendIdentityKey(b.key[:0], did)
	b.val = appendIdentityValue(b.val[:0], r)
	return b.b.Set(b.key, b.val, nil)
}

// Delete removes did's row.
func (b *IdentityBatch) Delete(did []byte) error {
	if err := checkIdentityDID(did); err != nil {
		return err
	}
	b.key = appendIdentityKey(b.key[:0], did)
	return b.b.Delete(b.key, nil)
}

// Len returns the writes collected since the last Commit.
func (b *IdentityBatch) Len() int { return int(b.b.Count()) }

// Commit applies the batch atomically without waiting for an fsync and
// empties it for reuse, whether or not it succeeded.
func (b *IdentityBatch) Commit() error {
	defer b.b.Reset()
	if b.b.Empty() {
		return nil
	}
	if err := b.s.checkIdentityWritable(); err != nil {
		return err
	}
	if err := b.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("store: commit identities: %w", err)
	}
	return nil
}

// Close releases the batch.
func (b *IdentityBatch) Close() { _ = b.b.Close() }

// ScanIdentities calls fn for up to limit identity rows in DID order,
// starting after the DID after (nil: from the first). fn receives rows
// that do not decode with a non-nil error (ErrCorrupt). It returns the DID
// of the last row visited (a copy), or nil once the scan has reached the
// end. did and rec are only valid during the call. Safe for concurrent
// use; must not race with Close.
func (s *Store) ScanIdentities(after []byte, limit int, fn func(did []byte, rec *IdentityRecord, err error)) (last []byte, err error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	lower := appendIdentityKey(nil, after)
	if after != nil {
		lower = append(lower, 0) // the first key after `after`
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{prefixIdentity + 1}})
	if err != nil {
		return nil, err
	}
	var rec IdentityRecord
	n := 0
	for ok := it.First(); ok && n < limit; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return nil, err
		}
		did := it.Key()[1:]
		fn(did, &rec, decodeIdentity(v, &rec))
		last = append(last[:0], did...)
		n++
	}
	if n < limit {
		last = nil // reached the end
	}
	return last, it.Close()
}
