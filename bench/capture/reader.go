package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Decoder bounds: captures are written with windows of 8 MiB or less, so
// anything asking for more is refused instead of allocated.
const (
	maxWindow    = 1 << 24
	maxDecodeMem = 1 << 26
	readChunk    = 1 << 20 // frame buffers grow by at most this per read, so a lying length costs little
)

func newDecoder(r io.Reader) (*zstd.Decoder, error) {
	// One goroutine-free decoder per stream: memory stays at one window.
	return zstd.NewReader(r,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxWindow),
		zstd.WithDecoderMaxMemory(maxDecodeMem))
}

// Reader streams a capture file: the header, then one record at a time,
// then (optionally) the snapshot. Memory is bounded by the zstd window plus
// the largest frame, whatever the file's size. A Reader is for one goroutine.
type Reader struct {
	// All fields are owned by the goroutine calling the Reader's methods.
	zr        *zstd.Decoder
	br        *bufio.Reader
	hdr       Header
	buf       []byte // current frame, reused
	prevTime  int64
	frames    int64
	bytes     int64
	perSource []int64
	atEOF     bool  // the trailer was read and checked
	err       error // sticky
}

// NewReader reads the header from r (a whole capture file, or any stream
// of one) and returns a Reader positioned at the first record.
func NewReader(r io.Reader) (*Reader, error) {
	zr, err := newDecoder(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	rd := &Reader{zr: zr, br: newBufReader(zr)}
	if err := rd.readHeader(); err != nil {
		zr.Close()
		return nil, err
	}
	return rd, nil
}

// Header returns the capture's header.
func (r *Reader) Header() Header { return r.hdr }

// Close releases the decoder. It does not close the underlying reader.
func (r *Reader) Close() error {
	r.zr.Close()
	if r.err == nil {
		r.err = ErrClosed
	}
	return nil
}

// wrapRead turns a decompression or short-read failure into the package's
// errors: a clean or unexpected EOF is truncation, anything else corruption.
func wrapRead(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: in %s", ErrTruncated, what)
	}
	if errors.Is(err, ErrLimit) || errors.Is(err, ErrFrameTooLarge) {
		return err
	}
	return fmt.Errorf("%w: in %s: %w", ErrCorrupt, what, err)
}

func (r *Reader) uvarint(what string) (uint64, error) {
	v, err := binary.ReadUvarint(r.br)
	if err != nil {
		return 0, wrapRead(what, err)
	}
	return v, nil
}

func (r *Reader) varint(what string) (int64, error) {
	v, err := binary.ReadVarint(r.br)
	if err != nil {
		return 0, wrapRead(what, err)
	}
	return v, nil
}

// bytesN reads n bytes into r.buf, growing it in bounded steps.
func (r *Reader) bytesN(what string, n uint64, limit int) ([]byte, error) {
	if n > uint64(limit) {
		if limit == MaxFrameBytes {
			return nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
		}
		return nil, fmt.Errorf("%w: %s of %d bytes > %d", ErrLimit, what, n, limit)
	}
	b := r.buf[:0]
	for uint64(len(b)) < n {
		step := min(int(n)-len(b), readChunk)
		if cap(b)-len(b) < step {
			b = append(b[:cap(b)], make([]byte, step)...)[:len(b)]
		}
		k, err := io.ReadFull(r.br, b[len(b):len(b)+step])
		b = b[:len(b)+k]
		if err != nil {
			r.buf = b
			return nil, wrapRead(what, err)
		}
	}
	r.buf = b
	return b, nil
}

func (r *Reader) str(what string, limit int) (string, error) {
	n, err := r.uvarint(what)
	if err != nil {
		return "", err
	}
	b, err := r.bytesN(what, n, limit)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func (r *Reader) magic(want string) error {
	var m [8]byte
	if _, err := io.ReadFull(r.br, m[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: %w", ErrBadMagic, ErrTruncated)
		}
		return wrapRead("magic", err)
	}
	if string(m[:6]) != want {
		return fmt.Errorf("%w: %q", ErrBadMagic, m[:6])
	}
	if v := binary.BigEndian.Uint16(m[6:]); v != Version {
		return fmt.Errorf("%w: %d", ErrVersion, v)
	}
	return nil
}

func (r *Reader) readHeader() error {
	if err := r.magic(bodyMagic); err != nil {
		return err
	}
	created, err := r.varint("header created time")
	if err != nil {
		return err
	}
	r.hdr.Created = time.Unix(0, created).UTC()
	r.prevTime = created
	if r.hdr.Note, err = r.str("header note", MaxNoteBytes); err != nil {
		return err
	}
	n, err := r.uvarint("header source count")
	if err != nil {
		return err
	}
	if n > MaxSources {
		return fmt.Errorf("%w: %d sources > %d", ErrLimit, n, MaxSources)
	}
	r.hdr.Sources = make([]Source, n)
	r.perSource = make([]int64, n)
	for i := range r.hdr.Sources {
		s := &r.hdr.Sources[i]
		if s.URL, err = r.str("source url", MaxNameBytes); err != nil {
			return err
		}
		if s.Hostname, err = r.str("source hostname", MaxNameBytes); err != nil {
			return err
		}
		c, err := r.uvarint("source frame count")
		if err != nil {
			return err
		}
		if c > maxSeq {
			return fmt.Errorf("%w: source %d frame count %d", ErrLimit, i, c)
		}
		s.Frames = int64(c) - 1
	}
	return nil
}

// Next returns the next record, or io.EOF after the last one once the
// trailer's counts have been checked. Record.Frame aliases the Reader's
// buffer until the next call. After an error every later call returns it.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	rec, err := r.next()
	if err != nil {
		r.err = err
	}
	return rec, err
}

func (r *Reader) next() (Record, error) {
	tag, err := r.uvarint("record source")
	if err != nil {
		return Record{}, err
	}
	if tag == 0 {
		if err := r.readTrailer(); err != nil {
			return Record{}, err
		}
		r.atEOF = true
		return Record{}, io.EOF
	}
	if tag > uint64(len(r.perSource)) {
		return Record{}, fmt.Errorf("%w: %d of %d", ErrSourceIndex, tag-1, len(r.perSource))
	}
	delta, err := r.varint("record time")
	if err != nil {
		return Record{}, err
	}
	seq, err := r.uvarint("record seq")
	if err != nil {
		return Record{}, err
	}
	if seq > maxSeq {
		return Record{}, fmt.Errorf("%w: %d", ErrSeqRange, seq)
	}
	n, err := r.uvarint("record length")
	if err != nil {
		return Record{}, err
	}
	frame, err := r.bytesN("record frame", n, MaxFrameBytes)
	if err != nil {
		return Record{}, err
	}
	src := int(tag - 1)
	r.prevTime += delta
	r.frames++
	r.bytes += int64(n)
	r.perSource[src]++
	return Record{Source: src, RecvTime: r.prevTime, Seq: int64(seq), Frame: frame}, nil
}

func (r *Reader) readTrailer() error {
	frames, err := r.uvarint("trailer frame count")
	if err != nil {
		return err
	}
	bytes, err := r.uvarint("trailer byte count")
	if err != nil {
		return err
	}
	if frames != uint64(r.frames) || bytes != uint64(r.bytes) {
		return fmt.Errorf("%w: trailer says %d frames / %d bytes, read %d / %d", ErrCountMismatch, frames, bytes, r.frames, r.bytes)
	}
	for i, got := range r.perSource {
		want, err := r.uvarint("trailer source count")
		if err != nil {
			return err
		}
		if want != uint64(got) {
			return fmt.Errorf("%w: source %d trailer says %d frames, read %d", ErrCountMismatch, i, want, got)
		}
		if h := r.hdr.Sources[i].Frames; h != CountUnknown && h != got {
			return fmt.Errorf("%w: source %d header says %d frames, read %d", ErrCountMismatch, i, h, got)
		}
	}
	return nil
}

// Snapshot reads the identity snapshot that follows the records. It may be
// called once, after Next has returned io.EOF.
func (r *Reader) Snapshot() (Snapshot, error) {
	if !r.atEOF {
		return nil, ErrSnapshotNotReached
	}
	if r.err != io.EOF {
		return nil, r.err
	}
	s, err := readSnapshot(r)
	if err != nil {
		r.err = err
		return nil, err
	}
	r.err = ErrSnapshotNotReached // the stream is consumed
	return s, nil
}

func readSnapshot(r *Reader) (Snapshot, error) {
	if err := r.magic(snapshotMagic); err != nil {
		if errors.Is(err, ErrTruncated) {
			return nil, fmt.Errorf("%w: snapshot missing", ErrTruncated)
		}
		return nil, err
	}
	n, err := r.uvarint("snapshot count")
	if err != nil {
		return nil, err
	}
	if n > MaxDocs {
		return nil, fmt.Errorf("%w: %d snapshot documents", ErrLimit, n)
	}
	s := make(Snapshot, min(n, 1<<12))
	for range n {
		did, err := r.str("snapshot did", MaxDIDBytes)
		if err != nil {
			return nil, err
		}
		dn, err := r.uvarint("snapshot document length")
		if err != nil {
			return nil, err
		}
		doc, err := r.bytesN("snapshot document", dn, MaxDocBytes)
		if err != nil {
			return nil, err
		}
		if _, dup := s[did]; dup {
			return nil, fmt.Errorf("%w: snapshot lists %q twice", ErrCorrupt, did)
		}
		s[did] = append([]byte(nil), doc...)
	}
	// Nothing may follow the snapshot in the decompressed stream.
	if _, err := r.br.ReadByte(); err == nil {
		return nil, fmt.Errorf("%w: bytes after the snapshot", ErrCorrupt)
	} else if !errors.Is(err, io.EOF) {
		return nil, wrapRead("end of stream", err)
	}
	return s, nil
}

func newBufReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 64<<10) }
