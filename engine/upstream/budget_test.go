package upstream

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/gobwas/ws"
)

// slowLargeServer: every connection sends one msgBytes message in 16 KiB
// writes 2 ms apart (~8 MB/s, so a message spends ~0.1 s in flight), then a
// 10-byte message, then waits.
func slowLargeServer(t *testing.T, msg []byte) *testServer {
	return newTestServer(t, false, func(sc *srvConn) {
		for off := 0; off < len(msg); off += 16 << 10 {
			if _, err := sc.Write(msg[off:min(len(msg), off+16<<10)]); err != nil {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		_ = sc.send(ws.OpBinary, true, payloadN(1, 10))
		sc.drain()
	})
}

// TestBufferBudgetBoundsSlowLargeMessages: many hosts each send a 1 MB
// message slowly, all at once. Each message's buffer grows to the 2 MiB
// class as its bytes arrive, so without a global bound they hold 16 × 2 MiB
// at the same time (the bound is per message: Config.MaxFrameBytes). With
// MaxBufferedBytes at 6 MiB the buffers in flight stay within it (sampled,
// and the heap's peak growth with generous slack), the hosts take turns,
// and every message arrives whole: none is dropped for its message clock.
func TestBufferBudgetBoundsSlowLargeMessages(t *testing.T) {
	const hosts, limit = 16, 6 << 20
	payload := payloadN(0, 1_000_000)
	ts := slowLargeServer(t, frameBytes(ws.OpBinary, true, payload))
	var big, small, bad atomic.Int64
	cfg := testConfig(func(h *Host, f Frame) bool {
		switch {
		case bytes.Equal(f.Bytes(), payload):
			big.Add(1)
		case f.Len() == 10:
			small.Add(1)
		default:
			bad.Add(1)
		}
		f.Release()
		return true
	})
	cfg.MaxBufferedBytes = limit
	cfg.MessageTimeout = time.Minute
	l := newTestLoop(t, cfg)

	w := watchHeap()
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			peak.Store(max(peak.Load(), l.mem.inUse()))
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	var hs []*Host
	for range hosts {
		hs = append(hs, addHost(t, l, ts, false))
	}
	waitFor(t, "every message", func() bool { return big.Load()+bad.Load() == hosts && small.Load() == hosts })
	close(stop)
	<-sampled
	growth, _ := w.finish()
	t.Logf("heap peak +%d KiB, buffers in flight peak %d KiB (limit %d KiB), %d turns starved",
		growth>>10, peak.Load()>>10, limit>>10, int64(l.m.starved.Get()))
	if bad.Load() != 0 {
		t.Fatalf("%d messages arrived damaged", bad.Load())
	}
	if p := peak.Load(); p > limit {
		t.Errorf("buffers in flight peaked at %d bytes, limit %d", p, limit)
	}
	if l.m.starved.Get() == 0 {
		t.Error("no host ever waited: the test does not exercise the bound")
	}
	// 16 messages in flight at once would take 32 MiB; the bound plus the
	// test's own servers and GC slack stays far below.
	if growth > limit+10<<20 {
		t.Errorf("heap peak grew by %d KiB with a %d KiB buffer bound", growth>>10, limit>>10)
	}
	for _, h := range hs {
		if h.Errors(ReasonMessageTimeout) != 0 || h.Failures() != 0 {
			t.Errorf("host dropped while waiting its turn: message timeouts %d, failures %d",
				h.Errors(ReasonMessageTimeout), h.Failures())
		}
	}
	if n := l.mem.inUse(); n != 0 {
		t.Errorf("%d bytes still counted with no message in flight", n)
	}
}

// TestBufferBudgetTricklersBounded: more hosts than the bound has room for
// declare 4.99 MB messages and trickle them a byte at a time. Together they
// hold no more than the bound (first buffers only get the half not kept for
// growing messages; the rest wait their turn holding nothing), each one is
// dropped by its message clock, waiting included (none keeps its bytes
// forever by waiting), and a well-behaved host queued behind them gets all
// its messages through.
func TestBufferBudgetTricklersBounded(t *testing.T) {
	const tricklers = 40
	var trickled atomic.Int64
	bad := trickleServer(t, 4_990_000, &trickled)
	const n = 200
	good := newTestServer(t, false, func(sc *srvConn) {
		for i := range n {
			if err := sc.send(ws.OpBinary, true, payloadN(i, 3000)); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
		sc.drain()
	})
	c := newCollector()
	cfg := testConfig(func(h *Host, f Frame) bool {
		if f.Len() == 3000 {
			return c.sink(h, f)
		}
		f.Release()
		return true
	})
	// First buffers get 2 MiB: 32 tricklers' 64 KiB, not 40.
	const limit = 4 << 20
	cfg.MaxBufferedBytes = limit
	cfg.MessageTimeout = 700 * time.Millisecond
	cfg.BackoffMin, cfg.BackoffMax = time.Minute, time.Minute
	l := newTestLoop(t, cfg)
	var ths []*Host
	for range tricklers {
		ths = append(ths, addHost(t, l, bad, false))
	}
	waitFor(t, "trickling", func() bool { return bad.conns.Load() == tricklers && trickled.Load() >= tricklers })
	if w := l.mem.waiting(); w == 0 {
		t.Error("every trickler got a buffer: the test does not exercise the bound")
	}
	if p := l.mem.inUse(); p > limit/2 {
		t.Errorf("tricklers' first buffers hold %d bytes, more than the %d not kept for growing messages", p, limit/2)
	}
	addHost(t, l, good, false)
	checkFrames(t, c, n, func(int) int { return 3000 })
	for _, h := range ths {
		waitFor(t, "every trickler dropped", func() bool { return h.Errors(ReasonMessageTimeout) == 1 })
	}
	if p := l.mem.inUse(); p != 0 {
		t.Errorf("%d bytes counted after every trickler was dropped", p)
	}
}

// TestPendingBounded: many hosts send a 60 KiB burst of small frames at
// once and the Sink pauses each at its first frame, as the relay does when
// its intake is full. A paused host keeps what was read past that frame;
// without a bound each keeps up to a whole scratch read (64 KiB, 2.5 MiB
// for these 40 hosts). With MaxPendingBytes the buffers stay within
// MaxPendingBytes + Readers × ReadBufferBytes + hosts × the smallReadBytes
// class, those larger than a small read (read while under the bound: reads
// are unchanged there) within the first two terms, and after Resume every
// frame arrives in order and nothing is pending.
func TestPendingBounded(t *testing.T) {
	const hosts, frames, size = 40, 200, 300
	const limit = 256 << 10
	var burst []byte
	for i := range frames {
		burst = append(burst, frameBytes(ws.OpBinary, true, payloadN(i, size))...)
	}
	ts := newTestServer(t, false, func(sc *srvConn) {
		// After the upgrade response has been read alone: bytes right
		// behind it would become pending through the upgrade's 4 KiB
		// read buffer, not a reader's scratch read.
		time.Sleep(30 * time.Millisecond)
		_, _ = sc.Write(burst)
		sc.drain()
	})
	var (
		mu        sync.Mutex
		seen      = map[*Host]int{}
		delivered atomic.Int64
		wrong     atomic.Int64
	)
	cfg := testConfig(func(h *Host, f Frame) bool {
		mu.Lock()
		seen[h]++
		k := seen[h]
		mu.Unlock()
		if !bytes.Equal(f.Bytes(), payloadN(k-1, size)) {
			wrong.Add(1)
		}
		f.Release()
		delivered.Add(1)
		return k != 1
	})
	cfg.MaxPendingBytes = limit
	cfg.Metrics = metrics.NewSet()
	l := newTestLoop(t, cfg)
	var hs []*Host
	for range hosts {
		hs = append(hs, addHost(t, l, ts, false))
	}
	waitFor(t, "every host paused", func() bool {
		for _, h := range hs {
			if !h.Paused() {
				return false
			}
		}
		return true
	})

	// Parked hosts have no owner, so their pending buffers hold still.
	var sum, large int64
	nLarge := 0
	for _, h := range hs {
		h.mu.Lock()
		if c := h.conn; c != nil && c.pending != nil {
			n := int64(cap(c.pending.B))
			sum += n
			if n > capFor(smallReadBytes) {
				large += n
				nLarge++
			}
		}
		h.mu.Unlock()
	}
	readersMax := int64(cfg.Readers) * capFor(l.cfg.ReadBufferBytes)
	bound := limit + readersMax + hosts*capFor(smallReadBytes)
	t.Logf("pending %d KiB in %d hosts (bound %d KiB), %d buffers above %d KiB hold %d KiB",
		sum>>10, hosts, bound>>10, nLarge, smallReadBytes>>10, large>>10)
	if got := l.pending.Load(); got != sum {
		t.Fatalf("Loop.pending = %d, pending buffers hold %d", got, sum)
	}
	if sum > bound {
		t.Fatalf("pending %d bytes > bound %d", sum, bound)
	}
	if large > limit+readersMax {
		t.Fatalf("buffers above a small read hold %d bytes > MaxPendingBytes + Readers × ReadBufferBytes = %d", large, limit+readersMax)
	}
	if nLarge == 0 {
		t.Fatal("no paused host kept more than a small read: reads under the bound were cut short")
	}
	var prom bytes.Buffer
	cfg.Metrics.WritePrometheus(&prom)
	if line := fmt.Sprintf("relay_upstream_pending_bytes %d\n", sum); !bytes.Contains(prom.Bytes(), []byte(line)) {
		t.Fatalf("missing %q in\n%s", line, prom.String())
	}

	for _, h := range hs {
		l.Resume(h)
	}
	waitFor(t, "every frame", func() bool { return delivered.Load() == hosts*frames })
	if wrong.Load() != 0 {
		t.Fatalf("%d frames arrived damaged or out of order", wrong.Load())
	}
	waitFor(t, "pending freed", func() bool { return l.pending.Load() == 0 })
}

// TestReadBufAtBound: at MaxPendingBytes a read takes smallReadBytes, below
// it the whole scratch buffer, and never more than the scratch buffer.
func TestReadBufAtBound(t *testing.T) {
	cfg := testConfig(func(h *Host, f Frame) bool { f.Release(); return true })
	cfg.MaxPendingBytes = 100 << 10
	l := newTestLoop(t, cfg)
	defer l.pending.Store(0)
	for _, tc := range []struct {
		pending int64
		scratch int
		want    int
	}{
		{0, 64 << 10, 64 << 10},
		{100<<10 - 1, 64 << 10, 64 << 10},
		{100 << 10, 64 << 10, smallReadBytes},
		{200 << 10, 64 << 10, smallReadBytes},
		{200 << 10, 2 << 10, 2 << 10},
	} {
		l.pending.Store(tc.pending)
		r := &reader{l: l, scratch: make([]byte, tc.scratch)}
		if got := len(r.readBuf()); got != tc.want {
			t.Errorf("pending %d, scratch %d: read takes %d bytes, want %d", tc.pending, tc.scratch, got, tc.want)
		}
	}
}
