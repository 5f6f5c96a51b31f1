package event_test

import (
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/event"
)

// decodeAndIndex is the per-frame ingest work measured by the benchmarks:
// decode the frame, then index its CAR slice.
func decodeAndIndex(tb testing.TB, d *event.Decoder, m *event.Message, r *car.Reader, f []byte) {
	if err := d.Decode(f, m); err != nil {
		tb.Fatal(err)
	}
	if err := r.Reset(m.Commit.Blocks, car.Options{}); err != nil {
		tb.Fatal(err)
	}
	if _, ok := r.Get(m.Commit.Commit); !ok {
		tb.Fatal("commit block missing")
	}
}

func TestZeroAllocs(t *testing.T) {
	all := loadCaptures(t)
	typical := medianCommit(t)
	var d event.Decoder
	var m event.Message
	var r car.Reader
	// Warm up with every frame of one host so every scratch slice has grown.
	for _, f := range all[0] {
		if err := d.Decode(f, &m); err != nil {
			t.Fatal(err)
		}
	}
	if n := testing.AllocsPerRun(100, func() { decodeAndIndex(t, &d, &m, &r, typical) }); n != 0 {
		t.Errorf("decode + CAR index: %v allocs, want 0", n)
	}
	for _, f := range all[0][:300] { // every kind appears in the first frames
		if n := testing.AllocsPerRun(5, func() {
			if err := d.Decode(f, &m); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Fatalf("decode of %v: %v allocs, want 0", m.Kind, n)
		}
	}
	buf := make([]byte, 0, 16<<10)
	if n := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = event.RewriteSeq(buf[:0], typical, 20_000_000_000); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("RewriteSeq: %v allocs, want 0", n)
	}
	if err := d.Decode(typical, &m); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = event.AppendWithSeq(buf[:0], &m, 20_000_000_000); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("AppendWithSeq: %v allocs, want 0", n)
	}
}

// BenchmarkDecodeCommit: a p50-size real #commit (host 0 of realpds-2),
// decoded with a reused Decoder and Message, then its CAR indexed.
func BenchmarkDecodeCommit(b *testing.B) {
	f := medianCommit(b)
	var d event.Decoder
	var m event.Message
	var r car.Reader
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(f)))
		b.ReportAllocs()
		reportCPU(b, func() {
			if err := d.Decode(f, &m); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("decode+car", func(b *testing.B) {
		b.SetBytes(int64(len(f)))
		b.ReportAllocs()
		reportCPU(b, func() { decodeAndIndex(b, &d, &m, &r, f) })
	})
	b.Run("decode+car+verify", func(b *testing.B) {
		b.SetBytes(int64(len(f)))
		b.ReportAllocs()
		reportCPU(b, func() {
			if err := d.Decode(f, &m); err != nil {
				b.Fatal(err)
			}
			if err := r.Reset(m.Commit.Blocks, car.Options{VerifyHashes: true}); err != nil {
				b.Fatal(err)
			}
		})
	})
	// The same body through fxamacker alone with plain string/[]byte
	// fields: the copying baseline the view types avoid.
	b.Run("fxamacker-copying-baseline", func(b *testing.B) {
		type op struct {
			Action string   `cbor:"action"`
			Path   string   `cbor:"path"`
			CID    cbor.Tag `cbor:"cid"`
		}
		type commit struct {
			Seq    int64    `cbor:"seq"`
			Repo   string   `cbor:"repo"`
			Rev    string   `cbor:"rev"`
			Since  *string  `cbor:"since"`
			Blocks []byte   `cbor:"blocks"`
			Ops    []op     `cbor:"ops"`
			Commit cbor.Tag `cbor:"commit"`
			Time   string   `cbor:"time"`
		}
		hdr := len("\xa2\x61t\x67#commit\x62op\x01")
		var c commit
		b.SetBytes(int64(len(f)))
		b.ReportAllocs()
		reportCPU(b, func() {
			if err := cbor.Unmarshal(f[hdr:], &c); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkDecodeAll decodes every frame of host 0 in order (all kinds).
func BenchmarkDecodeAll(b *testing.B) {
	frames := loadCaptures(b)[0]
	var total int64
	for _, f := range frames {
		total += int64(len(f))
	}
	var d event.Decoder
	var m event.Message
	b.SetBytes(total / int64(len(frames)))
	b.ReportAllocs()
	i := 0
	reportCPU(b, func() {
		if err := d.Decode(frames[i], &m); err != nil {
			b.Fatal(err)
		}
		if i++; i == len(frames) {
			i = 0
		}
	})
}

func BenchmarkRewriteSeq(b *testing.B) { benchRewrite(b, event.RewriteSeq) }

// BenchmarkRewriteEncodedSeq is the sequencer's path: RewriteSeq without
// the whole-body canonical check.
func BenchmarkRewriteEncodedSeq(b *testing.B) { benchRewrite(b, event.RewriteEncodedSeq) }

// benchRewrite stamps a new seq into the median capture commit with rewrite.
func benchRewrite(b *testing.B, rewrite func(dst, frame []byte, seq int64) ([]byte, error)) {
	f := medianCommit(b)
	buf := make([]byte, 0, len(f)+16)
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	reportCPU(b, func() {
		var err error
		if buf, err = rewrite(buf[:0], f, 20_000_000_000); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkAppendWithSeq(b *testing.B) {
	f := medianCommit(b)
	var d event.Decoder
	var m event.Message
	if err := d.Decode(f, &m); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, len(f)+16)
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	reportCPU(b, func() {
		var err error
		if buf, err = event.AppendWithSeq(buf[:0], &m, 20_000_000_000); err != nil {
			b.Fatal(err)
		}
	})
}
