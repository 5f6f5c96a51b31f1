package capture

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/klauspost/compress/zstd"
)

// Writer writes a capture file. It is not safe for concurrent use: the
// caller serializes Write calls (the Recorder does so under its mutex).
type Writer struct {
	// All fields are owned by the goroutine calling the Writer's methods.
	dst       *countingWriter
	enc       *zstd.Encoder
	scratch   []byte // record encoding buffer, reused
	hdr       Header
	prevTime  int64
	frames    int64
	bytes     int64
	perSource []int64
	snap      Snapshot
	closed    bool
}

// countingWriter counts compressed bytes so the footer can point at the
// snapshot frame.
type countingWriter struct {
	w io.Writer
	n int64 // owned by the Writer's goroutine
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// NewWriter starts a capture on w and writes its header. Close must be
// called to finish the file; it does not close w.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	if err := checkHeader(h); err != nil {
		return nil, err
	}
	cw := &countingWriter{w: w}
	enc, err := zstd.NewWriter(cw, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, fmt.Errorf("capture: zstd encoder: %w", err)
	}
	wr := &Writer{
		dst:       cw,
		enc:       enc,
		hdr:       h,
		prevTime:  h.Created.UnixNano(),
		perSource: make([]int64, len(h.Sources)),
	}
	if _, err := enc.Write(appendHeader(nil, h)); err != nil {
		return nil, fmt.Errorf("capture: writing header: %w", err)
	}
	return wr, nil
}

func checkHeader(h Header) error {
	if len(h.Sources) > MaxSources {
		return fmt.Errorf("%w: %d sources > %d", ErrLimit, len(h.Sources), MaxSources)
	}
	if len(h.Note) > MaxNoteBytes {
		return fmt.Errorf("%w: note of %d bytes > %d", ErrLimit, len(h.Note), MaxNoteBytes)
	}
	for i, s := range h.Sources {
		if len(s.URL) > MaxNameBytes || len(s.Hostname) > MaxNameBytes {
			return fmt.Errorf("%w: source %d name longer than %d bytes", ErrLimit, i, MaxNameBytes)
		}
		if s.Frames < CountUnknown {
			return fmt.Errorf("%w: source %d frame count %d", ErrCountMismatch, i, s.Frames)
		}
	}
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendHeader(b []byte, h Header) []byte {
	b = append(b, bodyMagic...)
	b = binary.BigEndian.AppendUint16(b, Version)
	b = binary.AppendVarint(b, h.Created.UnixNano())
	b = appendString(b, h.Note)
	b = binary.AppendUvarint(b, uint64(len(h.Sources)))
	for _, s := range h.Sources {
		b = appendString(b, s.URL)
		b = appendString(b, s.Hostname)
		b = binary.AppendUvarint(b, uint64(s.Frames+1)) // 0 = unknown
	}
	return b
}

// Write appends one record. rec.Frame is copied into the compressor before
// Write returns, so the caller may reuse it.
func (w *Writer) Write(rec Record) error {
	if w.closed {
		return ErrClosed
	}
	if rec.Source < 0 || rec.Source >= len(w.perSource) {
		return fmt.Errorf("%w: %d of %d", ErrSourceIndex, rec.Source, len(w.perSource))
	}
	if rec.Seq < 0 || rec.Seq > maxSeq {
		return fmt.Errorf("%w: %d", ErrSeqRange, rec.Seq)
	}
	if len(rec.Frame) > MaxFrameBytes {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(rec.Frame))
	}
	b := w.scratch[:0]
	b = binary.AppendUvarint(b, uint64(rec.Source)+1) // 0 ends the records
	b = binary.AppendVarint(b, rec.RecvTime-w.prevTime)
	b = binary.AppendUvarint(b, uint64(rec.Seq))
	b = binary.AppendUvarint(b, uint64(len(rec.Frame)))
	w.scratch = b
	if _, err := w.enc.Write(b); err != nil {
		return fmt.Errorf("capture: writing record: %w", err)
	}
	if _, err := w.enc.Write(rec.Frame); err != nil {
		return fmt.Errorf("capture: writing record: %w", err)
	}
	w.prevTime = rec.RecvTime
	w.frames++
	w.bytes += int64(len(rec.Frame))
	w.perSource[rec.Source]++
	return nil
}

// SetSnapshot sets the identity snapshot Close will store. The map is read
// by Close, so the caller must not modify it until then.
func (w *Writer) SetSnapshot(s Snapshot) { w.snap = s }

// Frames returns the number of records written so far.
func (w *Writer) Frames() int64 { return w.frames }

// Close writes the end marker, the trailer, the snapshot and the footer.
// It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return ErrClosed
	}
	w.closed = true
	for i, s := range w.hdr.Sources {
		if s.Frames != CountUnknown && s.Frames != w.perSource[i] {
			return fmt.Errorf("%w: source %d header says %d frames, wrote %d", ErrCountMismatch, i, s.Frames, w.perSource[i])
		}
	}
	b := binary.AppendUvarint(w.scratch[:0], 0)
	b = binary.AppendUvarint(b, uint64(w.frames))
	b = binary.AppendUvarint(b, uint64(w.bytes))
	for _, n := range w.perSource {
		b = binary.AppendUvarint(b, uint64(n))
	}
	if _, err := w.enc.Write(b); err != nil {
		return fmt.Errorf("capture: writing trailer: %w", err)
	}
	if err := w.enc.Close(); err != nil {
		return fmt.Errorf("capture: finishing records: %w", err)
	}
	snapOffset := w.dst.n
	w.enc.Reset(w.dst)
	if err := w.writeSnapshot(); err != nil {
		return err
	}
	if err := w.enc.Close(); err != nil {
		return fmt.Errorf("capture: finishing snapshot: %w", err)
	}
	f := make([]byte, 0, footerSize)
	f = append(f, skippableMagic...)
	f = binary.LittleEndian.AppendUint32(f, footerPayload)
	f = binary.LittleEndian.AppendUint64(f, uint64(snapOffset))
	f = append(f, footerMagic...)
	if _, err := w.dst.Write(f); err != nil {
		return fmt.Errorf("capture: writing footer: %w", err)
	}
	return nil
}

func (w *Writer) writeSnapshot() error {
	dids := make([]string, 0, len(w.snap))
	for did, doc := range w.snap {
		if len(did) > MaxDIDBytes || len(doc) > MaxDocBytes {
			return fmt.Errorf("%w: snapshot entry %.64q too long", ErrLimit, did)
		}
		dids = append(dids, did)
	}
	if len(dids) > MaxDocs {
		return fmt.Errorf("%w: %d snapshot documents", ErrLimit, len(dids))
	}
	slices.Sort(dids)
	b := append(w.scratch[:0], snapshotMagic...)
	b = binary.BigEndian.AppendUint16(b, Version)
	b = binary.AppendUvarint(b, uint64(len(dids)))
	for _, did := range dids {
		b = appendString(b, did)
		b = appendString(b, string(w.snap[did]))
		if len(b) >= 1<<20 {
			if _, err := w.enc.Write(b); err != nil {
				return fmt.Errorf("capture: writing snapshot: %w", err)
			}
			b = b[:0]
		}
	}
	w.scratch = b[:0]
	if _, err := w.enc.Write(b); err != nil {
		return fmt.Errorf("capture: writing snapshot: %w", err)
	}
	return nil
}
