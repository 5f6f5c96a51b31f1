package pool

import (
	"sync"
	"sync/atomic"

	"github.com/valyala/bytebufferpool"
)

// Frames hands out reference-counted frames backed by a Buffers and recycles
// their headers through a sync.Pool, so a frame costs no allocation at
// steady state. It is safe for concurrent use; its fields are static after
// NewFrames.
type Frames struct {
	bufs    *Buffers
	headers sync.Pool // *Frame with refs == 0 and buf == nil
}

// NewFrames returns a frame pool drawing its bytes from bufs.
func NewFrames(bufs *Buffers) *Frames {
	return &Frames{bufs: bufs}
}

// Frame is one immutable byte slice shared by many readers (the broadcaster
// and every consumer). Its life cycle:
//
//  1. Frames.Get returns it with one reference, owned by the caller, who
//     fills Buffer() and only then shares it.
//  2. Every additional holder calls Retain before the frame reaches it;
//     every holder calls Release exactly once when done.
//  3. The last Release returns the buffer to the Buffers and the header to
//     the Frames pool. Bytes must not be touched after one's own Release.
//
// Retain after the count reached zero and Release past zero panic in every
// build. With -tags invariants, headers are never reused and released bytes
// are poisoned, so also a late Bytes or a double Release racing a reuse is
// caught. Refcount operations are safe for concurrent use.
type Frame struct {
	// owner and buf are written by Frames.Get while the frame is private to
	// the getter and only read while refs > 0; the last Release clears buf.
	owner *Frames
	buf   *bytebufferpool.ByteBuffer
	refs  atomic.Int32
}

// Get returns a frame holding one reference whose Buffer is empty with
// capacity ≥ size.
func (p *Frames) Get(size int) *Frame {
	var f *Frame
	if !invariants {
		f, _ = p.headers.Get().(*Frame)
	}
	if f == nil {
		f = &Frame{owner: p}
	}
	f.buf = p.bufs.Get(size)
	f.refs.Store(1)
	return f
}

// Copy returns a frame holding one reference whose bytes are a copy of b.
func (p *Frames) Copy(b []byte) *Frame {
	f := p.Get(len(b))
	f.buf.B = append(f.buf.B, b...)
	return f
}

// Buffer returns the frame's buffer for the creator to fill before it
// shares the frame. Writing after sharing is a data race.
func (f *Frame) Buffer() *bytebufferpool.ByteBuffer { return f.buf }

// Bytes returns the frame's contents. The slice is valid until the caller's
// own Release and must not be modified.
func (f *Frame) Bytes() []byte {
	if invariants && f.refs.Load() <= 0 {
		panic("pool: Frame.Bytes after the last Release")
	}
	return f.buf.B
}

// Len returns the length of the frame's contents.
func (f *Frame) Len() int { return len(f.Bytes()) }

// Cap returns the capacity of the frame's buffer: the memory the frame
// pins while any reader holds it.
func (f *Frame) Cap() int { return cap(f.Bytes()) }

// Refs returns the current reference count, for tests and debugging; it is
// stale as soon as it returns.
func (f *Frame) Refs() int32 { return f.refs.Load() }

// Retain adds a reference for one more holder and returns f. The caller
// must already hold a reference; retaining a released frame panics.
func (f *Frame) Retain() *Frame {
	if n := f.refs.Add(1); n <= 1 {
		panic("pool: Frame.Retain after the last Release (use after release)")
	}
	return f
}

// Release drops the caller's reference. The last one returns the bytes to
// the Buffers; releasing more often than retained panics.
func (f *Frame) Release() {
	n := f.refs.Add(-1)
	if n > 0 {
		return
	}
	if n < 0 {
		panic("pool: Frame.Release without a matching reference (double release)")
	}
	buf := f.buf
	f.buf = nil
	if invariants {
		b := buf.B[:cap(buf.B)]
		for i := range b {
			b[i] = 0xff
		}
		// Keep a poisoned, empty view so a stale Bytes() fails loudly
		// instead of dereferencing nil; the header is never reused.
		f.buf = &bytebufferpool.ByteBuffer{}
	}
	f.owner.bufs.Put(buf)
	if !invariants {
		f.owner.headers.Put(f)
	}
}
