package upstream

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// BenchmarkLoop measures frames/s from local servers over loopback through
// the whole loop (epoll, readers, parse, pooled buffer, Sink, release), over
// ws:// and, for the cost of crypto/tls and recordConn, over wss://. The
// servers run in this process and share the two cores.
func BenchmarkLoop(b *testing.B) {
	for _, bc := range []struct {
		conns, size int
		tls         bool
	}{{1, 300, false}, {100, 300, false}, {1, 20_000, false}, {100, 20_000, false}, {1, 300, true}, {100, 300, true}, {1, 20_000, true}} {
		name := fmt.Sprintf("conns=%d/size=%d", bc.conns, bc.size)
		if bc.tls {
			name += "/tls"
		}
		b.Run(name, func(b *testing.B) {
			benchLoop(b, bc.conns, bc.size, bc.tls)
		})
	}
}

func benchLoop(b *testing.B, conns, size int, useTLS bool) {
	frame := frameBytes(ws.OpBinary, true, payloadN(1, size))
	batch := bytes.Repeat(frame, max(1, (64<<10)/len(frame)))
	per, rem := b.N/conns, b.N%conns
	start := make(chan struct{})
	var idx atomic.Int64
	ts := newTestServer(b, useTLS, func(sc *srvConn) {
		n := per
		if idx.Add(1) == 1 {
			n += rem
		}
		<-start
		for n > 0 {
			k := min(n, len(batch)/len(frame))
			if _, err := sc.Write(batch[:k*len(frame)]); err != nil {
				return
			}
			n -= k
		}
		sc.drain()
	})
	var got, connected atomic.Int64
	done := make(chan struct{})
	cfg := Config{
		Sink: func(h *Host, f Frame) bool {
			f.Release()
			if got.Add(1) == int64(b.N) {
				close(done)
			}
			return true
		},
		AllowInsecureHosts: true,
		Tick:               50 * time.Millisecond,
		OnConnect:          func(*Host) { connected.Add(1) },
	}
	if useTLS {
		cfg.TLSConfig = ts.tlsConfig()
	}
	l := newTestLoop(b, cfg)
	for range conns {
		if _, err := l.Add(ts.hostname(), HostOptions{Insecure: !useTLS}); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, "connections", func() bool { return connected.Load() == int64(conns) })
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	close(start)
	<-done
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkFrameReader is the parse-and-deliver ceiling without sockets.
func BenchmarkFrameReader(b *testing.B) {
	l := newTestLoop(b, Config{Sink: func(h *Host, f Frame) bool { f.Release(); return true }, Readers: 1, MaxConcurrentDials: 1})
	h := &Host{loop: l, name: "bench.test"}
	c := &conn{fr: frameReader{bufs: &l.bufs, max: l.cfg.MaxFrameBytes, mem: l.mem, host: h}}
	r := &reader{l: l}
	frame := frameBytes(ws.OpBinary, true, payloadN(1, 300))
	stream := bytes.Repeat(frame, 64)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := r.process(h, c, stream); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "frames/s")
}
