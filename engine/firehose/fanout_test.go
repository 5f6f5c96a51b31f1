package firehose

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/atrelay/relay/engine/wsframe"
	"github.com/atrelay/relay/internal/streamtest"
	"github.com/atrelay/relay/internal/testutil"
	"github.com/gobwas/ws"
)

// rawClient reads the stream into a fixed buffer and only counts bytes, so
// the client side allocates nothing per frame.
type rawClient struct {
	conn net.Conn
	got  atomic.Int64
}

// dialRaw connects a rawClient that pokes progress (without blocking) after
// every read.
func (e *env) dialRaw(cursor string, progress chan<- struct{}) *rawClient {
	e.t.Helper()
	conn, br, _, err := ws.Dial(context.Background(), e.url+"?cursor="+cursor)
	if err != nil {
		e.t.Fatal(err)
	}
	c := &rawClient{conn: conn}
	if br != nil {
		c.got.Add(int64(br.Buffered()))
	}
	go func() {
		buf := make([]byte, 256<<10)
		for {
			n, err := conn.Read(buf)
			c.got.Add(int64(n))
			select {
			case progress <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	e.t.Cleanup(func() { _ = conn.Close() })
	return c
}

// fanOut publishes seqs with pooled frames (no Log append: the consumers are
// live) and tracks how many bytes every client must have received.
type fanOut struct {
	e        *env
	clients  []*rawClient
	progress chan struct{}
	seq      uint64
	want     int64 // bytes each client must have received
}

func newFanOut(tb testing.TB, cfg Config, consumers, pad int) *fanOut {
	e := newEnv(tb, cfg, 0, pad)
	fo := &fanOut{e: e, progress: make(chan struct{}, 1)}
	for range consumers {
		fo.clients = append(fo.clients, e.dialRaw("0", fo.progress))
	}
	e.waitConsumers(consumers)
	return fo
}

// publish publishes one frame without allocating.
func (fo *fanOut) publish() {
	fo.seq++
	n := testFrameSeqOff + 8 + 5 + 5 + fo.e.pad
	f := fo.e.frames.Get(n)
	buf := f.Buffer()
	buf.B = appendTestFrame(buf.B[:0], fo.seq, fo.e.pad)
	var hdr [wsframe.HeaderMax]byte
	fo.want += int64(wsframe.PutHeader(hdr[:], wsframe.OpBinary, len(buf.B)) + len(buf.B))
	if err := fo.e.hub.Publish(fo.seq, f); err != nil {
		panic(err)
	}
}

// minGot returns the fewest bytes any client has received.
func (fo *fanOut) minGot() int64 {
	m := fo.clients[0].got.Load()
	for _, c := range fo.clients[1:] {
		m = min(m, c.got.Load())
	}
	return m
}

// drain waits until every client has every published byte.
func (fo *fanOut) drain() {
	for fo.minGot() < fo.want {
		<-fo.progress
	}
}

func TestPublishFanOutDoesNotAllocate(t *testing.T) {
	if streamtest.Race || streamtest.Invariants {
		t.Skip("the race detector and the pool's invariants build allocate")
	}
	// A small ring recycles frames, so the pool's own first-use allocations
	// settle during warm-up.
	fo := newFanOut(t, Config{RingFrames: 64}, 3, 2000)
	for range 200 {
		fo.publish()
		fo.drain()
	}
	allocs := testing.AllocsPerRun(500, func() {
		fo.publish()
		fo.drain()
	})
	if allocs != 0 {
		t.Fatalf("publish + fan-out to 3 consumers: %v allocs per frame, want 0", allocs)
	}
}

func TestPublishWithoutConsumersDoesNotAllocate(t *testing.T) {
	if streamtest.Race || streamtest.Invariants {
		t.Skip("the race detector and the pool's invariants build allocate")
	}
	fo := &fanOut{e: newEnv(t, Config{RingFrames: 64}, 0, 100)}
	for range 200 {
		fo.publish()
	}
	if allocs := testing.AllocsPerRun(1000, fo.publish); allocs != 0 {
		t.Fatalf("Publish with ring eviction: %v allocs, want 0", allocs)
	}
}

// BenchmarkPublishFanOut10 publishes ~2 KiB frames (the capture's p50) to
// 10 live consumers over loopback. The publisher keeps at most half the
// ring ahead of the slowest consumer, so this is the sustained rate at
// which every consumer receives every frame.
func BenchmarkPublishFanOut10(b *testing.B) {
	const pad = 1900
	fo := newFanOut(b, Config{RingFrames: 4096}, 10, pad)
	fo.publish()
	fo.drain()
	per := fo.want
	limit := int64(4096/2) * per
	b.SetBytes(per)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for fo.want-fo.minGot() > limit {
			<-fo.progress
		}
		fo.publish()
	}
	fo.drain()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	b.ReportMetric(float64(b.N)*10/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkPublish measures the sequencer's cost of Publish alone (ring
// append, eviction, no waiting consumers).
func BenchmarkPublish(b *testing.B) {
	fo := &fanOut{e: newEnv(b, Config{RingFrames: 1024}, 0, 1900)}
	b.ReportAllocs()
	for b.Loop() {
		fo.publish()
	}
}

// TestIdleConsumerMemory: an idle consumer costs about 14 KiB of Go memory
// (see the package doc): both goroutine stacks, its fanout.Conn with the
// batch arrays, the small read buffer. The bound is loose (the test's
// client sockets count too); it catches a per-consumer buffer that should
// only exist while replaying or writing.
func TestIdleConsumerMemory(t *testing.T) {
	if streamtest.Race {
		t.Skip("the race detector's shadow memory inflates every figure")
	}
	const n = 500
	e := newEnv(t, Config{MaxConsumers: n + 1, MaxConsumersPerIP: n + 1}, 0, 10)
	e.publish(1)
	dial := func() {
		conn, _, _, err := ws.Dial(context.Background(), e.url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
	}
	dial() // the first consumer warms the hub's pools
	e.waitConsumers(1)
	inUse := testutil.LiveBytes
	before := inUse()
	for range n {
		dial()
	}
	e.waitConsumers(n + 1)
	per := (inUse() - before) / n
	t.Logf("%d bytes per idle consumer", per)
	if per > 20<<10 {
		t.Fatalf("%d bytes per idle consumer, want about 14 KiB", per)
	}
}
