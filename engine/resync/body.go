package resync

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/atrelay/relay/pool"
)

// ErrSlowBody: a getRepo body arrived slower than MinReadBytesPerSecond
// over a MinRateWindow (retried like a timeout).
var ErrSlowBody = errors.New("resync: getRepo body arrives too slowly")

// firstReadSize is the first buffer of a body: most repositories are
// small, and the buffer grows as bytes arrive. It is also what a fetch
// reserves in the memory share before sending its request.
const firstReadSize = 64 << 10

// readBounded reads body into a buffer from bufs that grows only when
// full (see growBuf): hint (the Content-Length, -1 when unknown) only stops
// a growth step from overshooting, it never sizes an allocation, so a
// length that is declared but never sent costs one first buffer. It fails with ErrTooLarge as soon as more than limit bytes
// arrive.
//
// Every buffer is reserved in mem before it is allocated, the old and the
// new one together while the body is copied across; a step the share can
// never hold fails with ErrRepoMemory. On success mem holds exactly
// cap(buf.B); on error the buffer is back in bufs and mem is released. g
// (nil for none) is told of every byte read and of waits for memory.
func readBounded(ctx context.Context, bufs *pool.Buffers, mem *reservation, g *readGuard,
	body io.Reader, hint, limit int64) (*bytebufferpool.ByteBuffer, error) {
	size := min(int64(firstReadSize), limit+1)
	if hint >= 0 {
		// One spare byte, so a body of exactly hint bytes ends with EOF
		// without growing the buffer first.
		size = min(size, hint+1)
	}
	buf, err := allocBuf(ctx, bufs, mem, g, 0, size)
	if err != nil {
		mem.release()
		return nil, err
	}
	mem.shrinkTo(int64(cap(buf.B)))
	fail := func(err error) (*bytebufferpool.ByteBuffer, error) {
		bufs.Put(buf)
		mem.release()
		return nil, err
	}
	// A value, not io.LimitReader's pointer, so reading does not allocate.
	lr := io.LimitedReader{R: body, N: limit + 1}
	for {
		if len(buf.B) == cap(buf.B) {
			cur := int64(len(buf.B))
			if cur == hint {
				// The declared length is in: look for EOF before paying
				// for a larger buffer.
				var b [1]byte
				n, err := readSome(&lr, b[:])
				if err == io.EOF {
					return buf, nil
				}
				if err != nil {
					return fail(err)
				}
				g.add(n)
				if err := growBuf(ctx, bufs, mem, g, &buf, hint, limit); err != nil {
					return fail(err)
				}
				buf.B = append(buf.B, b[0])
				continue
			}
			if err := growBuf(ctx, bufs, mem, g, &buf, hint, limit); err != nil {
				return fail(err)
			}
		}
		n, err := lr.Read(buf.B[len(buf.B):cap(buf.B)])
		buf.B = buf.B[:len(buf.B)+n]
		g.add(n)
		if int64(len(buf.B)) > limit {
			return fail(fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit))
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return fail(err)
		}
	}
}

// readSome reads until at least one byte or an error arrives.
func readSome(r *io.LimitedReader, p []byte) (int, error) {
	for {
		n, err := r.Read(p)
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// growBuf replaces the full *buf (at most limit bytes, so the step is
// always larger) with a larger buffer holding the same bytes: twice the
// size, but no more than the declared length (hint) or limit+1 asks. On
// error *buf is unchanged.
func growBuf(ctx context.Context, bufs *pool.Buffers, mem *reservation, g *readGuard,
	buf **bytebufferpool.ByteBuffer, hint, limit int64) error {
	old := *buf
	cur := int64(cap(old.B))
	next := max(2*cur, firstReadSize)
	if hint > cur {
		next = min(next, hint+1)
	}
	next = min(next, limit+1)
	nb, err := allocBuf(ctx, bufs, mem, g, cur, next)
	if err != nil {
		return err
	}
	nb.B = append(nb.B, old.B...)
	bufs.Put(old)
	mem.shrinkTo(int64(cap(nb.B)))
	*buf = nb
	return nil
}

// allocBuf reserves and returns an empty buffer for size bytes on top of
// held bytes already reserved: the pool's class for size when the share
// can hold it, else exactly size, else the largest step the whole share
// allows (ErrRepoMemory when that is no larger than held).
func allocBuf(ctx context.Context, bufs *pool.Buffers, mem *reservation, g *readGuard,
	held, size int64) (*bytebufferpool.ByteBuffer, error) {
	c := bufCap(size)
	if !mem.s.fits(held + c) {
		c = size
	}
	if !mem.s.fits(held + c) {
		c = mem.s.capacity - held
		if c <= held {
			return nil, fmt.Errorf("%w: a body over %d bytes", ErrRepoMemory, held)
		}
	}
	g.pause()
	err := mem.growTo(ctx, held+c)
	g.resume()
	if err != nil {
		return nil, err
	}
	if bufCap(c) == c {
		// A class size or beyond the classes: Get returns exactly c.
		return bufs.Get(int(c)), nil
	}
	return &bytebufferpool.ByteBuffer{B: make([]byte, 0, c)}, nil
}

// bufCap is the capacity pool.Buffers.Get(n) returns: the smallest class
// that holds n, or n itself beyond the classes.
func bufCap(n int64) int64 {
	if n <= pool.MaxClassSize {
		for c := range pool.NumClasses {
			if s := int64(pool.ClassSize(c)); n <= s {
				return s
			}
		}
	}
	return n
}

// scratchPerBlock bounds what verifying a repository holds per CAR block
// beyond the CAR itself: the verifier's block table (a 48-byte entry per
// block, up to 2.25 entries per block while append grows it) and its
// hash index (at most 4 slots of 4 bytes per block).
const scratchPerBlock = 128

// retainScratchBytes is how much verifier scratch a worker keeps between
// resyncs (outside the share, Concurrency times). After a larger
// repository the worker starts a fresh verifier, so what the share
// reserved for the scratch really is given back.
const retainScratchBytes = 1 << 20

// carBlocks counts the sections after the header of a CAR v1 by their
// length prefixes, without parsing them: the number of blocks the
// verifier's table can reach. It stops at the first prefix that is
// malformed or runs past the end, where the verifier stops too.
func carBlocks(b []byte) int {
	n := -1 // the first section is the header
	for len(b) > 0 {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			break
		}
		b = b[k+int(l):]
		n++
	}
	return max(n, 0)
}

// readGuard cancels a fetch whose body stalls: every window must bring at
// least minBytes. A window in which the reader waited for the memory
// share does not count: the stall was ours. A nil *readGuard does
// nothing.
type readGuard struct {
	// Static after startReadGuard.
	window   time.Duration
	minBytes int64
	cancel   context.CancelCauseFunc

	// Written by the reading goroutine.
	read    atomic.Int64 // body bytes so far
	paused  atomic.Bool  // waiting for the memory share now
	resumed atomic.Bool  // waited since the last check

	mu      sync.Mutex
	timer   *time.Timer // guarded by mu
	stopped bool        // guarded by mu
	last    int64       // guarded by mu: read at the previous check
}

// startReadGuard starts checking every window; cancel ends the fetch with
// ErrSlowBody as its cause. The caller must stop it.
func startReadGuard(window time.Duration, minBytesPerSecond int64, cancel context.CancelCauseFunc) *readGuard {
	g := &readGuard{window: window, minBytes: int64(float64(minBytesPerSecond) * window.Seconds()), cancel: cancel}
	g.mu.Lock()
	g.timer = time.AfterFunc(window, g.check)
	g.mu.Unlock()
	return g
}

func (g *readGuard) check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return
	}
	n := g.read.Load()
	waited := g.resumed.Swap(false) || g.paused.Load()
	if got := n - g.last; got < g.minBytes && !waited {
		g.cancel(fmt.Errorf("%w: %d bytes in %v, want %d", ErrSlowBody, got, g.window, g.minBytes))
		return
	}
	g.last = n
	g.timer.Reset(g.window)
}

// stop ends the checks; the guard never cancels after it returns.
func (g *readGuard) stop() {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.stopped = true
	g.timer.Stop()
	g.mu.Unlock()
}

func (g *readGuard) add(n int) {
	if g != nil {
		g.read.Add(int64(n))
	}
}

func (g *readGuard) pause() {
	if g != nil {
		g.paused.Store(true)
	}
}

func (g *readGuard) resume() {
	if g != nil {
		g.resumed.Store(true)
		g.paused.Store(false)
	}
}
