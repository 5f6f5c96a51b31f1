package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Capture is a capture ready to iterate: its header, its identity snapshot
// and a way to stream its records, as many times as needed. Open and
// ImportShared both return one, so tools work on either kind. A Capture is
// immutable and safe for concurrent use; each Records call has its own
// Iterator.
type Capture struct {
	// Header and Identities are static after construction.
	Header     Header
	Identities Snapshot
	open       func() (Iterator, error)
}

// Records starts a new pass over the records.
func (c *Capture) Records() (Iterator, error) { return c.open() }

// Each makes one pass over the records, calling fn with each in order,
// and returns the first error of the pass or of fn. The record's Frame is
// valid only during the call: fn copies what it keeps.
func (c *Capture) Each(fn func(Record) error) error {
	it, err := c.Records()
	if err != nil {
		return err
	}
	defer it.Close()
	for {
		rec, err := it.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}

// FramesBySource reads every frame of c into memory, copied, grouped by
// source index in capture order: for comparing what a tool wrote or
// served with the original.
func FramesBySource(c *Capture) ([][][]byte, error) {
	out := make([][][]byte, len(c.Header.Sources))
	err := c.Each(func(r Record) error {
		out[r.Source] = append(out[r.Source], bytes.Clone(r.Frame))
		return nil
	})
	return out, err
}

// Open opens a capture file written by Writer. It reads the header and the
// snapshot (found through the footer) but no records.
func Open(path string) (*Capture, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	c, err := openAt(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.open = func() (Iterator, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		r, err := NewReader(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		return &fileIter{Reader: r, f: f}, nil
	}
	return c, nil
}

// fileIter closes the file along with the Reader.
type fileIter struct {
	*Reader
	f *os.File // owned by the iterating goroutine
}

func (it *fileIter) Close() error {
	it.Reader.Close()
	return it.f.Close()
}

// OpenReaderAt is Open for a capture held in memory or any io.ReaderAt of
// the given size. ra must stay valid and unchanged while the Capture is used.
func OpenReaderAt(ra io.ReaderAt, size int64) (*Capture, error) {
	c, err := openAt(ra, size)
	if err != nil {
		return nil, err
	}
	c.open = func() (Iterator, error) { return NewReader(io.NewSectionReader(ra, 0, size)) }
	return c, nil
}

func openAt(ra io.ReaderAt, size int64) (*Capture, error) {
	if size < footerSize {
		return nil, fmt.Errorf("%w: %d-byte file", ErrNoFooter, size)
	}
	var f [footerSize]byte
	if _, err := ra.ReadAt(f[:], size-footerSize); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoFooter, err)
	}
	if string(f[:4]) != skippableMagic || binary.LittleEndian.Uint32(f[4:8]) != footerPayload || string(f[16:]) != footerMagic {
		return nil, ErrNoFooter
	}
	off := binary.LittleEndian.Uint64(f[8:16])
	if off >= uint64(size-footerSize) {
		return nil, fmt.Errorf("%w: snapshot offset %d beyond %d-byte file", ErrCorrupt, off, size)
	}
	r, err := NewReader(io.NewSectionReader(ra, 0, size))
	if err != nil {
		return nil, err
	}
	hdr := r.Header()
	r.Close()

	sr, err := newDecoder(io.NewSectionReader(ra, int64(off), size-int64(off)))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	defer sr.Close()
	snap, err := readSnapshot(&Reader{zr: sr, br: newBufReader(sr)})
	if err != nil {
		return nil, err
	}
	return &Capture{Header: hdr, Identities: snap}, nil
}

// WriteCapture copies c (records and snapshot) into a new capture file on w,
// e.g. to turn an imported shared capture into a single file.
func WriteCapture(w io.Writer, c *Capture) error {
	wr, err := NewWriter(w, c.Header)
	if err != nil {
		return err
	}
	if err := c.Each(wr.Write); err != nil {
		return err
	}
	wr.SetSnapshot(c.Identities)
	return wr.Close()
}
