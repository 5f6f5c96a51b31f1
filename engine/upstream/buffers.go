package upstream

import "github.com/valyala/bytebufferpool"

// bufPool hands out message buffers. Every acquisition in the package goes
// through get, so moving to pool/'s size-classed buffers is a change to this
// file only. Safe for concurrent use.
type bufPool struct {
	p bytebufferpool.Pool // static after construction; internally synchronised
}

// get returns an empty buffer with capacity for at least n bytes. A pooled
// buffer that is too small is replaced rather than grown, so the copy of old
// contents never happens.
func (b *bufPool) get(n int) *bytebufferpool.ByteBuffer {
	bb := b.p.Get()
	if cap(bb.B) < n {
		bb.B = make([]byte, 0, n)
	}
	bb.B = bb.B[:0]
	return bb
}

// put returns bb to the pool; bb must not be used afterwards.
func (b *bufPool) put(bb *bytebufferpool.ByteBuffer) {
	b.p.Put(bb)
}
