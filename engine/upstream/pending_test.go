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
