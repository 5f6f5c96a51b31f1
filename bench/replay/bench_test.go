package replay

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/atrelay/relay/bench/capture"
	"github.com/atrelay/relay/bench/wsconn"
)

// TestSendAllocs checks the per-frame send path (cursor + frame write)
// allocates nothing once its buffers have grown.
func TestSendAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	c, err := capture.ImportShared(sharedDir())
	if err != nil {
		t.Fatal(err)
	}
	fs, _, err := load(c, DefaultBlockBytes)
	if err != nil {
		t.Fatal(err)
	}
	f := fs[0]
	h := &host{f: f}
	server, client := net.Pipe()
	defer client.Close()
	go io.Copy(io.Discard, client)
	s := &session{h: h, c: wsconn.New(server, 64<<10)}
	cur, err := newCursor(f)
	if err != nil {
		t.Fatal(err)
	}
	defer cur.close()
	run := func() {
		if err := cur.seek(0); err != nil {
			t.Fatal(err)
		}
		if n, err := s.send(cur, 0, f.len()); err != nil || n != f.len() {
			t.Fatalf("sent %d of %d: %v", n, f.len(), err)
		}
	}
	run() // grow the block buffer
	if a := testing.AllocsPerRun(5, run); a > 0 {
		t.Fatalf("sending %d frames allocates %.0f times", f.len(), a)
	}
}

func TestSkipsSeqlessAndRepeatedFrames(t *testing.T) {
	frame := []byte("\xa2\x61t\x69#identity\x62op\x01\xa0")
	var recs []capture.Record
	for _, seq := range []int64{1, 0, 2, 2, 1, 5} {
		recs = append(recs, capture.Record{Seq: seq, Frame: frame})
	}
	c := recordsCapture(t, recs)
	r, err := New(c, Options{Gated: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if h := r.Hosts()[0]; h.Frames != 3 || h.LastSeq != 5 || r.Skipped() != 3 {
		t.Fatalf("host %+v, skipped %d", h, r.Skipped())
	}
}

// BenchmarkReplayFast measures one host of the shared capture (9,314
// frames, 16.7 MB) served as fast as possible to a local client that reads
// and discards; one op is one whole replay over a fresh connection.
func BenchmarkReplayFast(b *testing.B) {
	c, err := capture.ImportShared(sharedDir())
	if err != nil {
		b.Fatal(err)
	}
	r, err := New(c, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	h := r.Hosts()[0]
	b.SetBytes(r.hosts[0].f.bytes)
	b.ReportAllocs()
	var frames int
	for b.Loop() {
		cl := dial(b, subscribeURL(h, "?cursor=0"))
		for range h.Frames {
			if _, _, err := cl.next(); err != nil {
				b.Fatal(err)
			}
		}
		frames += h.Frames
		cl.conn.Close()
	}
	b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkReplayFastParallel is BenchmarkReplayFast with both hosts
// served at once, each to its own client.
func BenchmarkReplayFastParallel(b *testing.B) {
	f, err := StartFromShared(context.Background(), sharedDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	hosts := f.Replay.Hosts()
	b.ReportAllocs()
	var frames int
	for b.Loop() {
		done := make(chan error, len(hosts))
		for _, h := range hosts {
			cl := dial(b, subscribeURL(h, "?cursor=0"))
			go func() {
				defer cl.conn.Close()
				for range h.Frames {
					if _, _, err := cl.next(); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			frames += h.Frames
		}
		for range hosts {
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
}
