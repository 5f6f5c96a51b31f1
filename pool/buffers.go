package pool

import (
	"strconv"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/bytebufferpool"
)

// classSizes are the capacities of the buffer classes, smallest first.
// Measured on the real firehose capture (shared/NOTES.md): frames are min
// 99 B, p50 1,932 B, p99 4,191 B, max 6,262 B; the hard limit is 5,000,000 B
// per frame and 2,000,000 B of commit blocks.
//
//	class  capacity  holds
//	0      512 B     small frames (#identity, #account, tiny commits)
//	1      1 KiB     small commits
//	2      2 KiB     p50 frames
//	3      4 KiB     up to about p99
//	4      8 KiB     p99 and the largest frame seen
//	5      16 KiB    commits with several records
//	6      64 KiB    commits with many or large records
//	7      512 KiB   large record batches
//	8      2 MiB     frames at the 2,000,000 B commit-blocks limit
//	9      8 MiB     frames up to the 5,000,000 B frame limit
//
// The small classes step by two, not four: the firehose ring holds tens of
// thousands of frames, and a 2.1 KB frame in an 8 KiB buffer pinned four
// times its size (measured: 500 MB of heap for a 128 MiB ring).
//
// Capacities are powers of two on purpose: bytebufferpool calibrates each
// pool by the power-of-two bucket of the lengths it sees on Put and then
// drops buffers whose capacity exceeds the 95th-percentile bucket, and
// allocates fresh buffers at the most common bucket. Put presents every
// buffer at full capacity (len = cap) so calibration sees exactly the class
// size: the class's own buffers are never discarded and a fresh allocation
// from bytebufferpool is exactly one class size. Buffers that grew past
// 8 MiB (or past twice their class, see Put) are dropped, not pooled: one rare giant frame must not pin that much
// memory in a pool for the life of the process.
var classSizes = [...]int{512, 1 << 10, 2 << 10, 4 << 10, 8 << 10, 16 << 10, 64 << 10, 512 << 10, 2 << 20, 8 << 20}

// NumClasses is the number of buffer size classes.
const NumClasses = len(classSizes)

// MaxClassSize is the capacity of the largest class; Get for more returns an
// unpooled buffer and Put drops buffers above it.
const MaxClassSize = 8 << 20

// ClassSize returns the capacity of class c (0 ≤ c < NumClasses).
func ClassSize(c int) int { return classSizes[c] }

// classFor returns the smallest class whose capacity is ≥ size, or
// NumClasses when size exceeds the largest class.
func classFor(size int) int {
	for c, s := range classSizes {
		if size <= s {
			return c
		}
	}
	return NumClasses
}

// classOfCap returns the largest class whose capacity is ≤ c, or -1 when c
// is below the smallest class or above the largest one.
func classOfCap(c int) int {
	if c > MaxClassSize {
		return -1
	}
	for i := NumClasses - 1; i >= 0; i-- {
		if classSizes[i] <= c {
			return i
		}
	}
	return -1
}

// Buffers is a set of size-classed byte-buffer pools. It is safe for
// concurrent use. All fields are static after NewBuffers except the
// counters, which are atomic.
type Buffers struct {
	classes [NumClasses]bufferClass

	oversize *metrics.Counter // Get larger than MaxClassSize
	dropped  *metrics.Counter // Put of a buffer no class takes

	set   *metrics.Set // where the series live, for Unregister
	names []string     // the series' names
}

// bufferClass is one size class; its fields are static or atomic.
type bufferClass struct {
	pool   bytebufferpool.Pool
	gets   *metrics.Counter
	hits   *metrics.Counter
	misses *metrics.Counter
	// held approximates the bytes parked in pool: +size on Put, −size on
	// a hit, reset to 0 on a miss. sync.Pool frees parked buffers at GC
	// without telling us, so it overestimates after a GC until the next
	// miss; racing Puts can push it briefly below the truth (never below 0
	// as exported).
	held atomic.Int64
}

// NewBuffers returns empty pools whose metrics are registered on set under
// the label pool=name (name must be unique on set; registering twice panics
// with a "BUG:" message from the metrics package). A nil set gets a private
// one, so the metrics still count but are exported nowhere.
//
// Metrics, with c the class capacity in bytes:
//
//	relay_pool_buffer_gets_total{pool,class=c}    Get calls served by c
//	relay_pool_buffer_hits_total{pool,class=c}    ...reusing a pooled buffer
//	relay_pool_buffer_misses_total{pool,class=c}  ...allocating a new one
//	relay_pool_buffer_held_bytes{pool,class=c}    approximate bytes parked
//	relay_pool_buffer_oversize_total{pool}        Get beyond MaxClassSize
//	relay_pool_buffer_dropped_total{pool}         Put not pooled (size)
func NewBuffers(set *metrics.Set, name string) *Buffers {
	if set == nil {
		set = metrics.NewSet()
	}
	b := &Buffers{set: set}
	counter := func(n string) *metrics.Counter {
		b.names = append(b.names, n)
		return set.NewCounter(n)
	}
	pl := `pool="` + name + `"`
	for i := range b.classes {
		c := &b.classes[i]
		l := "{" + pl + `,class="` + strconv.Itoa(classSizes[i]) + `"}`
		c.gets = counter("relay_pool_buffer_gets_total" + l)
		c.hits = counter("relay_pool_buffer_hits_total" + l)
		c.misses = counter("relay_pool_buffer_misses_total" + l)
		b.names = append(b.names, "relay_pool_buffer_held_bytes"+l)
		set.NewGauge("relay_pool_buffer_held_bytes"+l, func() float64 { return float64(max(c.held.Load(), 0)) })
	}
	b.oversize = counter("relay_pool_buffer_oversize_total{" + pl + "}")
	b.dropped = counter("relay_pool_buffer_dropped_total{" + pl + "}")
	return b
}

// Unregister removes b's series from the set NewBuffers registered them on,
// so that a new Buffers of the same name can use it. b keeps working.
func (b *Buffers) Unregister() {
	for _, n := range b.names {
		b.set.UnregisterMetric(n)
	}
}

// Get returns an empty buffer (len 0) with capacity ≥ size, from the
// smallest class that fits. Sizes above MaxClassSize get an exact-size
// buffer that Put will drop. Negative sizes count as 0. The caller owns the
// buffer until it passes it to Put.
func (b *Buffers) Get(size int) *bytebufferpool.ByteBuffer {
	size = max(size, 0)
	ci := classFor(size)
	if ci == NumClasses {
		b.oversize.Inc()
		return &bytebufferpool.ByteBuffer{B: make([]byte, 0, size)}
	}
	c := &b.classes[ci]
	c.gets.Inc()
	buf := c.pool.Get()
	n := classSizes[ci]
	if cap(buf.B) >= n && buf.B[:1][0] == pooledMark {
		c.hits.Inc()
		c.held.Add(-int64(n))
		buf.B = buf.B[:0]
		return buf
	}
	// A buffer bytebufferpool made because its pool was empty: zeroed
	// memory sized by its calibration (nothing before the first one).
	c.misses.Inc()
	// sync.Pool only comes up empty when no P has a buffer to share, so
	// the class holds (almost) nothing now: resynchronize the estimate that
	// GC-freed buffers inflated.
	c.held.Store(0)
	if cap(buf.B) < n {
		buf.B = make([]byte, 0, n)
	}
	return buf
}

// pooledMark is written at index 0 of every buffer Put parks. Buffers that
// bytebufferpool allocates on an empty pool are zeroed, so the mark tells a
// reused buffer from a new one with a one-byte read, keeping the hit and
// miss counters exact.
const pooledMark = 0xa5

// Put returns buf to the class matching its capacity: the largest class not
// above it. A buffer that grew (the caller appended past the class size) is
// pooled in that class only while its capacity is under twice the class
// size, and is trimmed to the class size with a full slice expression so
// every pooled buffer has exactly its class capacity (keeping
// bytebufferpool's calibration exact, see classSizes). Other buffers, and
// those below the smallest class or above MaxClassSize, are dropped and
// counted. buf must not be used after Put. A nil buf is ignored.
func (b *Buffers) Put(buf *bytebufferpool.ByteBuffer) {
	if buf == nil {
		return
	}
	ci := classOfCap(cap(buf.B))
	if ci < 0 || cap(buf.B) >= 2*classSizes[ci] {
		b.dropped.Inc()
		return
	}
	c := &b.classes[ci]
	n := classSizes[ci]
	c.held.Add(int64(n))
	// Full length so bytebufferpool calibrates on capacity (see classSizes).
	buf.B = buf.B[:n:n]
	buf.B[0] = pooledMark
	c.pool.Put(buf)
}

// ClassStats is a snapshot of one class's counters.
type ClassStats struct {
	Size      int
	Gets      uint64
	Hits      uint64
	Misses    uint64
	HeldBytes int64
}

// Stats returns a snapshot of class c's counters (0 ≤ c < NumClasses).
func (b *Buffers) Stats(c int) ClassStats {
	k := &b.classes[c]
	return ClassStats{
		Size:      classSizes[c],
		Gets:      k.gets.Get(),
		Hits:      k.hits.Get(),
		Misses:    k.misses.Get(),
		HeldBytes: k.held.Load(),
	}
}
