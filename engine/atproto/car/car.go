// Package car reads and writes CAR v1 archives held in one byte slice: the
// firehose `blocks` field of #commit and #sync, and whole-repository exports
// from getRepo (spec digest §5).
//
// # Layout
//
//	CAR     := uvarint(len(H)) ‖ H ‖ section*
//	H       := DAG-CBOR map {"roots": [CID link, ...], "version": 1}
//	section := uvarint(len(CID) + len(data)) ‖ CID ‖ data
//
// The section CID is binary CIDv1 without the 0x00 prefix that CID links
// carry inside CBOR. Varints are unsigned LEB128, minimal, at most 9 bytes.
// A one-root header is 58 bytes, so a CAR starts
//
//	3a a2 65 72 6f 6f 74 73 81 d8 2a 58 25 00 01 71 12 20 <32-byte digest>
//	   67 76 65 72 73 69 6f 6e 01
//
// # Rules
//
// version is 1 and roots is non-empty; roots[0] is the commit. Blocks come in
// any order, may repeat and may be unreferenced (§5.2); Get returns the first
// block with a CID. Every limit is a field of Options whose zero value means
// a safe default, never "unlimited".
//
// # Ownership
//
// A Reader is owned by one goroutine. Reset parses into slices that point
// into the caller's buffer: Roots, Blocks, every CID and every Data stay
// valid only while that buffer is unchanged and only until the next Reset.
// Nothing is copied and, once the Reader's slices have grown to the largest
// CAR seen, Reset and Get do not allocate.
package car

import (
	"errors"
	"fmt"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/dagcbor"
)

// Defaults used when an Options field is zero.
const (
	// DefaultMaxBlocks admits whole-repository exports of large accounts.
	DefaultMaxBlocks = 2_000_000
	// DefaultMaxBlockSize is the record-block limit of spec §11; commits and
	// MST nodes are far smaller.
	DefaultMaxBlockSize = 1_000_000
	// MaxHeaderLen bounds the header map; a one-root header is 58 bytes.
	MaxHeaderLen = 4096
)

// Errors, one per reason a CAR is rejected. Reset wraps some of them with
// the block index; test with errors.Is.
var (
	ErrTruncated     = errors.New("car: truncated")
	ErrVarint        = errors.New("car: malformed varint")
	ErrHeader        = errors.New("car: header is not a {roots, version} map")
	ErrHeaderLen     = errors.New("car: header longer than MaxHeaderLen")
	ErrVersion       = errors.New("car: version is not 1")
	ErrNoRoots       = errors.New("car: roots is empty")
	ErrEmptySection  = errors.New("car: zero-length section")
	ErrBadCID        = errors.New("car: malformed block CID")
	ErrHashMismatch  = errors.New("car: block data does not hash to its CID")
	ErrUnverifiable  = errors.New("car: block CID is not blessed (sha2-256), cannot verify")
	ErrTooManyBlocks = errors.New("car: more blocks than Options.MaxBlocks")
	ErrBlockTooLarge = errors.New("car: block larger than Options.MaxBlockSize")
)

// Options bound and configure one Reset.
type Options struct {
	// VerifyHashes checks every block's SHA-256 against its CID digest.
	// Blocks whose CID is not blessed then fail with ErrUnverifiable.
	VerifyHashes bool
	// MaxBlocks bounds the block count; 0 means DefaultMaxBlocks.
	MaxBlocks int
	// MaxBlockSize bounds one block's data in bytes; 0 means
	// DefaultMaxBlockSize.
	MaxBlockSize int
}

// Block is one CAR section: a CID and the data it names, both views into the
// buffer given to Reset.
type Block struct {
	CID  cid.CID
	Data []byte
}

// Reader is a parsed CAR. Its zero value is ready for Reset. Not safe for
// concurrent use: it belongs to the goroutine that calls Reset.
type Reader struct {
	// Roots and Blocks are the result of the last Reset (views into its
	// buffer). Callers may read them; Reset overwrites them.
	Roots  []cid.CID
	Blocks []Block

	idx index // lookup table over Blocks, rebuilt by Reset for large CARs
}

// Root returns the first root (the commit in atproto), or nil before a
// successful Reset.
func (r *Reader) Root() cid.CID {
	if len(r.Roots) == 0 {
		return nil
	}
	return r.Roots[0]
}

// Reset parses buf and replaces the Reader's contents. On error the Reader
// holds no blocks and no roots.
func (r *Reader) Reset(buf []byte, opts Options) error {
	r.Roots = r.Roots[:0]
	r.Blocks = r.Blocks[:0]
	r.idx.reset()
	if err := r.parse(buf, opts); err != nil {
		clear(r.Roots)
		clear(r.Blocks)
		r.Roots = r.Roots[:0]
		r.Blocks = r.Blocks[:0]
		return err
	}
	if len(r.Blocks) > linearMax {
		r.idx.build(r.Blocks)
	}
	return nil
}

func (r *Reader) parse(buf []byte, opts Options) error {
	maxBlocks, maxSize := opts.MaxBlocks, opts.MaxBlockSize
	if maxBlocks <= 0 {
		maxBlocks = DefaultMaxBlocks
	}
	if maxSize <= 0 {
		maxSize = DefaultMaxBlockSize
	}
	hlen, n := uvarint(buf)
	if n <= 0 {
		return varintErr(n)
	}
	if hlen > MaxHeaderLen {
		return ErrHeaderLen
	}
	buf = buf[n:]
	if hlen > uint64(len(buf)) {
		return ErrTruncated
	}
	if err := r.header(buf[:hlen]); err != nil {
		return err
	}
	buf = buf[hlen:]
	for len(buf) > 0 {
		slen, n := uvarint(buf)
		if n <= 0 {
			return fmt.Errorf("block %d: %w", len(r.Blocks), varintErr(n))
		}
		buf = buf[n:]
		if slen == 0 {
			return fmt.Errorf("block %d: %w", len(r.Blocks), ErrEmptySection)
		}
		if slen > uint64(len(buf)) {
			return fmt.Errorf("block %d: %w", len(r.Blocks), ErrTruncated)
		}
		sec := buf[:slen:slen]
		buf = buf[slen:]
		c, data, err := cid.Parse(sec)
		if err != nil {
			return fmt.Errorf("block %d: %w: %w", len(r.Blocks), ErrBadCID, err)
		}
		if len(r.Blocks) >= maxBlocks {
			return ErrTooManyBlocks
		}
		if len(data) > maxSize {
			return fmt.Errorf("block %d: %w", len(r.Blocks), ErrBlockTooLarge)
		}
		if opts.VerifyHashes {
			if !c.IsBlessed() {
				return fmt.Errorf("block %d: %w", len(r.Blocks), ErrUnverifiable)
			}
			if !c.Verify(data) {
				return fmt.Errorf("block %d: %w", len(r.Blocks), ErrHashMismatch)
			}
		}
		r.Blocks = append(r.Blocks, Block{CID: c, Data: data})
	}
	return nil
}

// header parses the header map. Key order is not enforced (go-car writers
// differ); keys other than roots and version are ignored.
func (r *Reader) header(h []byte) error {
	n, err := dagcbor.Envelope(h)
	if err != nil || n != len(h) {
		return ErrHeader
	}
	m, pairs, hn, _ := dagcbor.ReadHead(h)
	if m != dagcbor.MajorMap {
		return ErrHeader
	}
	h = h[hn:]
	var sawRoots, sawVersion bool
	for range pairs {
		_, klen, kn, _ := dagcbor.ReadHead(h)
		key := string(h[kn : kn+int(klen)]) // compared only; does not escape
		h = h[kn+int(klen):]
		vlen, _ := dagcbor.Envelope(h)
		val := h[:vlen]
		h = h[vlen:]
		switch key {
		case "version":
			if sawVersion {
				return ErrHeader
			}
			sawVersion = true
			vm, v, _, _ := dagcbor.ReadHead(val)
			if vm != dagcbor.MajorUint || v != 1 {
				return ErrVersion
			}
		case "roots":
			if sawRoots {
				return ErrHeader
			}
			sawRoots = true
			if err := r.roots(val); err != nil {
				return err
			}
		}
	}
	if !sawVersion {
		return ErrVersion
	}
	if !sawRoots {
		return ErrHeader
	}
	return nil
}

func (r *Reader) roots(val []byte) error {
	am, count, an, _ := dagcbor.ReadHead(val)
	if am != dagcbor.MajorArray {
		return ErrHeader
	}
	if count == 0 {
		return ErrNoRoots
	}
	val = val[an:]
	for range count {
		c, ln, err := dagcbor.ReadCIDLink(val)
		if err != nil {
			return ErrHeader
		}
		r.Roots = append(r.Roots, c)
		val = val[ln:]
	}
	return nil
}

// Get returns the data of the first block whose CID equals c. The result is
// a view into the buffer given to Reset.
func (r *Reader) Get(c cid.CID) ([]byte, bool) {
	if r.idx.built() {
		i := r.idx.find(r.Blocks, c)
		if i < 0 {
			return nil, false
		}
		return r.Blocks[i].Data, true
	}
	for i := range r.Blocks {
		if string(r.Blocks[i].CID) == string(c) {
			return r.Blocks[i].Data, true
		}
	}
	return nil, false
}

// uvarint decodes a minimal unsigned LEB128 varint of at most 9 bytes; n is
// 0 when b ends first and -1 when the varint is malformed or not minimal.
func uvarint(b []byte) (v uint64, n int) {
	for i := 0; i < len(b) && i < 9; i++ {
		c := b[i]
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, -1
			}
			return v, i + 1
		}
	}
	if len(b) < 9 {
		return 0, 0
	}
	return 0, -1
}

func varintErr(n int) error {
	if n == 0 {
		return ErrTruncated
	}
	return ErrVarint
}
