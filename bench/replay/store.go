package replay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/atrelay/relay/bench/capture"
	"github.com/klauspost/compress/zstd"
)

// DefaultBlockBytes is the raw size at which a host's frames are cut into a
// compressed block: big enough to compress well, small enough that a
// cursor into the middle of a host costs one small decompression.
const DefaultBlockBytes = 1 << 20

// ErrBlock: a compressed block did not decode to the frames it was built
// from (memory corruption or a bug; never expected).
var ErrBlock = errors.New("replay: corrupt frame block")

// frames is one host's share of a capture, held compressed. It is built by
// load and read-only afterwards, so any number of connections share it.
type frames struct {
	seqs   []int64 // seq of each frame, strictly increasing
	times  []int64 // receive time of each frame (Unix ns), for pacing
	blocks []block // frames in order, cut every blockBytes raw bytes
	bytes  int64   // raw frame bytes
}

// block is a run of frames: zstd(uvarint(len) || frame, …).
type block struct {
	first int // index of its first frame
	data  []byte
}

func (f *frames) len() int { return len(f.seqs) }

// loadStats counts what load did not keep.
type loadStats struct {
	skipped int64 // records without a seq, or with a seq not above the host's previous one
}

// load splits a capture by source into compressed per-host frame stores.
func load(c *capture.Capture, blockBytes int) ([]*frames, loadStats, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, loadStats{}, err
	}
	defer enc.Close()
	hosts := make([]*frames, len(c.Header.Sources))
	pending := make([][]byte, len(hosts)) // raw frames of each host's open block
	for i := range hosts {
		hosts[i] = &frames{}
	}
	var st loadStats
	err = c.Each(func(rec capture.Record) error {
		h := hosts[rec.Source]
		// Cursor semantics need strictly increasing seqs; frames without a
		// seq (#info, errors) have no place in a replayed stream.
		if rec.Seq <= 0 || (h.len() > 0 && rec.Seq <= h.seqs[h.len()-1]) {
			st.skipped++
			return nil
		}
		if len(pending[rec.Source]) == 0 {
			h.blocks = append(h.blocks, block{first: h.len()})
		}
		p := binary.AppendUvarint(pending[rec.Source], uint64(len(rec.Frame)))
		pending[rec.Source] = append(p, rec.Frame...)
		h.seqs = append(h.seqs, rec.Seq)
		h.times = append(h.times, rec.RecvTime)
		h.bytes += int64(len(rec.Frame))
		if len(pending[rec.Source]) >= blockBytes {
			seal(enc, h, pending, rec.Source)
		}
		return nil
	})
	if err != nil {
		return nil, st, err
	}
	for i, h := range hosts {
		seal(enc, h, pending, i)
	}
	return hosts, st, nil
}

// seal compresses host i's pending frames into its open (last) block.
func seal(enc *zstd.Encoder, h *frames, pending [][]byte, i int) {
	if len(pending[i]) == 0 {
		return
	}
	b := &h.blocks[len(h.blocks)-1]
	b.data = enc.EncodeAll(pending[i], make([]byte, 0, len(pending[i])/3))
	pending[i] = pending[i][:0]
}

// blockOf returns the index of the block holding frame i.
func (f *frames) blockOf(i int) int {
	return sort.Search(len(f.blocks), func(b int) bool { return f.blocks[b].first > i }) - 1
}

// startAfter returns the index of the first frame with seq > cursor.
func (f *frames) startAfter(cursor int64, head int) int {
	return sort.Search(head, func(i int) bool { return f.seqs[i] > cursor })
}

// cursor reads one host's frames in order for one connection. It owns a
// decoder and one decompressed block; frames it returns alias that block
// and stay valid until the cursor moves to another block.
type cursor struct {
	f    *frames
	dec  *zstd.Decoder
	buf  []byte // decompressed current block
	blk  int    // index of the block in buf; -1 before the first
	off  int    // read offset in buf
	next int    // index of the frame at off
}

func newCursor(f *frames) (*cursor, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<24))
	if err != nil {
		return nil, err
	}
	return &cursor{f: f, dec: dec, blk: -1}, nil
}

func (c *cursor) close() { c.dec.Close() }

// seek positions the cursor at frame i (0 ≤ i ≤ len).
func (c *cursor) seek(i int) error {
	if i >= c.f.len() {
		c.next = i
		return nil
	}
	b := c.f.blockOf(i)
	if b != c.blk || i < c.next {
		if err := c.load(b); err != nil {
			return err
		}
	}
	for c.next < i {
		if _, err := c.frame(); err != nil {
			return err
		}
	}
	return nil
}

func (c *cursor) load(b int) error {
	buf, err := c.dec.DecodeAll(c.f.blocks[b].data, c.buf[:0])
	if err != nil {
		return fmt.Errorf("%w: block %d: %w", ErrBlock, b, err)
	}
	c.buf, c.blk, c.off, c.next = buf, b, 0, c.f.blocks[b].first
	return nil
}

// frame returns the frame at the cursor and advances past it.
func (c *cursor) frame() ([]byte, error) {
	if c.off == len(c.buf) {
		if c.blk+1 >= len(c.f.blocks) {
			return nil, fmt.Errorf("%w: read past the last frame", ErrBlock)
		}
		if err := c.load(c.blk + 1); err != nil {
			return nil, err
		}
	}
	n, k := binary.Uvarint(c.buf[c.off:])
	if k <= 0 || n > uint64(len(c.buf)-c.off-k) {
		return nil, fmt.Errorf("%w: block %d offset %d", ErrBlock, c.blk, c.off)
	}
	start := c.off + k
	c.off = start + int(n)
	c.next++
	return c.buf[start:c.off:c.off], nil
}
