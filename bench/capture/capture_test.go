package capture

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// testCapture builds n records over three sources, with negative time
// deltas, seqless frames and an empty frame, plus a two-entry snapshot.
func testCapture(n int) (Header, []Record, Snapshot) {
	h := Header{
		Created: time.Date(2026, 11, 25, 22, 17, 57, 806_000_000, time.UTC),
		Note:    "unit test capture",
		Sources: []Source{
			{URL: "ws://127.0.0.1:1/xrpc/com.atproto.sync.subscribeRepos", Hostname: "localhost:1", Frames: CountUnknown},
			{URL: "ws://127.0.0.1:2/xrpc/com.atproto.sync.subscribeRepos?cursor=0", Hostname: "localhost:2", Frames: CountUnknown},
			{URL: "wss://pds.example/xrpc/com.atproto.sync.subscribeRepos", Hostname: "pds.example", Frames: CountUnknown},
		},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	recs := make([]Record, n)
	t := h.Created.UnixNano()
	seqs := make([]int64, 3)
	for i := range recs {
		src := rng.IntN(3)
		t += rng.Int64N(2_000_000) - 500_000 // sometimes backwards
		seqs[src]++
		frame := make([]byte, rng.IntN(3000))
		for j := range frame {
			frame[j] = byte(j*7 + i) // compressible but varied
		}
		seq := seqs[src]
		if i%97 == 0 {
			seq = 0
		}
		recs[i] = Record{Source: src, RecvTime: t, Seq: seq, Frame: frame}
	}
	snap := Snapshot{
		"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa": json.RawMessage(`{"id":"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"}`),
		"did:web:example.com":              json.RawMessage(`{"id":"did:web:example.com"}`),
	}
	return h, recs, snap
}

func writeCapture(t testing.TB, h Header, recs []Record, snap Snapshot) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	w.SetSnapshot(snap)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readAll(it Iterator) ([]Record, error) {
	var out []Record
	for {
		r, err := it.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		r.Frame = bytes.Clone(r.Frame)
		out = append(out, r)
	}
}

func sameRecords(t *testing.T, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Source != w.Source || g.RecvTime != w.RecvTime || g.Seq != w.Seq || !bytes.Equal(g.Frame, w.Frame) {
			t.Fatalf("record %d: got {%d %d %d %d bytes}, want {%d %d %d %d bytes}",
				i, g.Source, g.RecvTime, g.Seq, len(g.Frame), w.Source, w.RecvTime, w.Seq, len(w.Frame))
		}
	}
}

func sameHeader(t *testing.T, got, want Header) {
	t.Helper()
	if !got.Created.Equal(want.Created) || got.Note != want.Note || fmt.Sprint(got.Sources) != fmt.Sprint(want.Sources) {
		t.Fatalf("header: got %+v, want %+v", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	h, recs, snap := testCapture(2000)
	file := writeCapture(t, h, recs, snap)

	t.Run("random access", func(t *testing.T) {
		c, err := OpenReaderAt(bytes.NewReader(file), int64(len(file)))
		if err != nil {
			t.Fatal(err)
		}
		sameHeader(t, c.Header, h)
		if fmt.Sprint(c.Identities) != fmt.Sprint(snap) {
			t.Fatalf("snapshot: got %s, want %s", c.Identities, snap)
		}
		for pass := range 2 { // Records may be iterated again
			it, err := c.Records()
			if err != nil {
				t.Fatal(err)
			}
			got, err := readAll(it)
			it.Close()
			if err != nil {
				t.Fatalf("pass %d: %v", pass, err)
			}
			sameRecords(t, got, recs)
		}
	})
	t.Run("stream", func(t *testing.T) {
		// A plain io.Reader (no seeking): records, then the snapshot.
		r, err := NewReader(io.MultiReader(bytes.NewReader(file)))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.Snapshot(); !errors.Is(err, ErrSnapshotNotReached) {
			t.Fatalf("early Snapshot: %v", err)
		}
		got, err := readAll(r)
		if err != nil {
			t.Fatal(err)
		}
		sameRecords(t, got, recs)
		s, err := r.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(s) != fmt.Sprint(snap) {
			t.Fatalf("snapshot: got %s, want %s", s, snap)
		}
	})
	t.Run("file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "c.rcap")
		if err := os.WriteFile(path, file, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		it, err := c.Records()
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		got, err := readAll(it)
		if err != nil {
			t.Fatal(err)
		}
		sameRecords(t, got, recs)
	})
	t.Run("zstd tools read the whole file", func(t *testing.T) {
		// The footer is a skippable frame, so a plain decoder sees the
		// records and the snapshot and nothing else.
		raw := decompress(t, file)
		if !bytes.HasPrefix(raw, []byte(bodyMagic)) || !bytes.Contains(raw, []byte(snapshotMagic)) {
			t.Fatalf("decompressed stream lacks the body or snapshot magic")
		}
	})
}

func TestEmptyCapture(t *testing.T) {
	h := Header{Created: time.Unix(0, 0).UTC()}
	file := writeCapture(t, h, nil, nil)
	c, err := OpenReaderAt(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	it, _ := c.Records()
	defer it.Close()
	if _, err := it.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next on empty capture: %v", err)
	}
	if len(c.Identities) != 0 {
		t.Fatalf("snapshot: %v", c.Identities)
	}
}

func TestWriterRejects(t *testing.T) {
	h, _, _ := testCapture(0)
	cases := []struct {
		name string
		rec  Record
		want error
	}{
		{"source out of range", Record{Source: 3}, ErrSourceIndex},
		{"negative source", Record{Source: -1}, ErrSourceIndex},
		{"negative seq", Record{Seq: -1}, ErrSeqRange},
		{"seq beyond 2^53", Record{Seq: 1 << 53}, ErrSeqRange},
		{"huge frame", Record{Frame: make([]byte, MaxFrameBytes+1)}, ErrFrameTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, err := NewWriter(io.Discard, h)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(tc.rec); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("known count differs", func(t *testing.T) {
		h := Header{Sources: []Source{{Frames: 2}}}
		w, _ := NewWriter(io.Discard, h)
		w.Write(Record{})
		if err := w.Close(); !errors.Is(err, ErrCountMismatch) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("write after close", func(t *testing.T) {
		w, _ := NewWriter(io.Discard, h)
		w.Close()
		if err := w.Write(Record{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("got %v", err)
		}
	})
}

// compress wraps a hand-made decompressed stream as a capture body.
func compress(t testing.TB, raw []byte) []byte {
	t.Helper()
	e, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	return e.EncodeAll(raw, nil)
}

// decompress is what a plain zstd decoder reads from a capture file.
func decompress(t testing.TB, file []byte) []byte {
	t.Helper()
	d, err := zstd.NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	raw, err := io.ReadAll(d)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// rawStream is the decompressed body of a one-source capture with the given
// records and trailer counts.
func rawStream(frames [][]byte, trailerFrames uint64) []byte {
	b := appendHeader(nil, Header{Sources: []Source{{URL: "u", Hostname: "h", Frames: CountUnknown}}})
	var total uint64
	for i, f := range frames {
		b = binary.AppendUvarint(b, 1)
		b = binary.AppendVarint(b, 1)
		b = binary.AppendUvarint(b, uint64(i+1))
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
		total += uint64(len(f))
	}
	b = binary.AppendUvarint(b, 0)
	b = binary.AppendUvarint(b, trailerFrames)
	b = binary.AppendUvarint(b, total)
	return binary.AppendUvarint(b, trailerFrames)
}

func drain(data []byte) error {
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := readAll(r); err != nil {
		return err
	}
	_, err = r.Snapshot()
	return err
}

func TestCorrupt(t *testing.T) {
	h, recs, snap := testCapture(300)
	file := writeCapture(t, h, recs, snap)

	t.Run("truncated", func(t *testing.T) {
		// Without its footer the stream is still whole for a sequential
		// reader; only random access needs the footer.
		if err := drain(file[:len(file)-footerSize]); err != nil {
			t.Errorf("stream without footer: %v", err)
		}
		for _, cut := range []int{0, 1, 10, len(file) / 3, len(file) / 2, len(file) - footerSize - 1} {
			err := drain(file[:cut])
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrBadMagic) {
				t.Errorf("cut at %d: got %v, want a truncation error", cut, err)
			}
		}
		for _, cut := range []int{0, 10, len(file) / 2, len(file) - footerSize, len(file) - 1} {
			if _, err := OpenReaderAt(bytes.NewReader(file[:cut]), int64(cut)); !errors.Is(err, ErrNoFooter) {
				t.Errorf("OpenReaderAt of %d/%d bytes: got %v, want ErrNoFooter", cut, len(file), err)
			}
		}
	})
	t.Run("flipped byte", func(t *testing.T) {
		for _, at := range []int{len(file) / 4, len(file) / 2, 3 * len(file) / 4} {
			bad := bytes.Clone(file)
			bad[at] ^= 0x40
			if err := drain(bad); err == nil {
				t.Errorf("flip at %d: no error", at)
			}
		}
	})
	t.Run("not zstd", func(t *testing.T) {
		if err := drain([]byte("hello, this is not a capture")); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("got %v", err)
		}
	})
	cases := []struct {
		name string
		raw  []byte
		want error
	}{
		{"bad magic", []byte("NOTCAP\x00\x01"), ErrBadMagic},
		{"future version", []byte("RLYCAP\x00\x09"), ErrVersion},
		{"short magic", []byte("RLY"), ErrBadMagic},
		{"trailer count wrong", rawStream([][]byte{{1}, {2}}, 3), ErrCountMismatch},
		{"no end marker", rawStream([][]byte{{1}}, 1)[:len(rawStream([][]byte{{1}}, 1))-4], ErrTruncated},
		{"source index", append(appendHeader(nil, Header{}), 1, 0, 0, 0), ErrSourceIndex},
		{"frame too large", append(appendHeader(nil, Header{Sources: []Source{{}}}), 1, 0, 0, 0x81, 0x80, 0x80, 0x10), ErrFrameTooLarge},
		{"too many sources", append(append([]byte(bodyMagic), 0, 1, 0, 0), 0x81, 0x80, 0x08), ErrLimit},
		{"snapshot missing", rawStream([][]byte{{1}}, 1), ErrTruncated},
		{"bad snapshot magic", append(rawStream(nil, 0), "RLYXXX\x00\x01"...), ErrBadMagic},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := drain(compress(t, tc.raw)); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestReaderMemoryBounded iterates a capture ten times the size of the
// bound and checks the heap allocated while reading stays under it.
func TestReaderMemoryBounded(t *testing.T) {
	h := Header{Sources: []Source{{Frames: CountUnknown}}}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	frame := make([]byte, 4096)
	const n = 20_000 // 80 MB raw
	for i := range n {
		for j := range 64 { // a little entropy per frame keeps it from compressing to nothing
			frame[rng.IntN(len(frame))] = byte(j + i)
		}
		if err := w.Write(Record{RecvTime: int64(i), Seq: int64(i + 1), Frame: frame}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	file := buf.Bytes()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	count := 0
	for {
		_, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		count++
	}
	runtime.ReadMemStats(&after)
	if count != n {
		t.Fatalf("read %d records, want %d", count, n)
	}
	const bound = 12 << 20 // one 8 MiB zstd window plus buffers
	if got := after.TotalAlloc - before.TotalAlloc; got > bound {
		t.Fatalf("reading %d MB of frames allocated %d bytes, bound %d", n*len(frame)>>20, got, bound)
	}
}

func TestReaderNextAllocs(t *testing.T) {
	h, recs, snap := testCapture(3000)
	file := writeCapture(t, h, recs, snap)
	r, err := NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for range 100 { // warm up the frame buffer
		r.Next()
	}
	if a := testing.AllocsPerRun(1000, func() {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("Reader.Next allocates %.1f per record", a)
	}
}

func FuzzReader(f *testing.F) {
	h, recs, snap := testCapture(5)
	file := writeCapture(f, h, recs, snap)
	f.Add(file, false)
	f.Add(file[:len(file)/2], false)
	f.Add(rawStream([][]byte{{1, 2, 3}, {}}, 2), true)
	f.Add(append(rawStream([][]byte{{9}}, 1), "RLYIDS\x00\x01\x01\x03did\x02{}"...), true)
	f.Add([]byte("RLYCAP\x00\x01"), true)
	f.Fuzz(func(t *testing.T, data []byte, raw bool) {
		if raw {
			// Compress the input so mutations reach the parser rather
			// than stopping at zstd's checksum.
			data = compress(t, data)
		}
		drain(data)
		c, err := OpenReaderAt(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		it, err := c.Records()
		if err != nil {
			return
		}
		defer it.Close()
		readAll(it)
	})
}

func BenchmarkReaderNext(b *testing.B) {
	h, recs, snap := testCapture(5000)
	file := writeCapture(b, h, recs, snap)
	var bytesPer int64
	for _, r := range recs {
		bytesPer += int64(len(r.Frame))
	}
	b.SetBytes(bytesPer / int64(len(recs)))
	b.ReportAllocs()
	r, _ := NewReader(bytes.NewReader(file))
	for b.Loop() {
		if _, err := r.Next(); err != nil {
			r.Close()
			r, _ = NewReader(bytes.NewReader(file))
		}
	}
	r.Close()
}

// TestWorkedExample checks the bytes the package doc shows.
func TestWorkedExample(t *testing.T) {
	h := Header{Created: time.Unix(1, 0), Note: "hi", Sources: []Source{{URL: "ws://h:1", Hostname: "h:1", Frames: CountUnknown}}}
	file := writeCapture(t, h, []Record{{RecvTime: 1_000_001_500, Seq: 7, Frame: []byte{0xa1, 0x62, 0x6f}}}, nil)
	raw := decompress(t, file)
	want := "524c594341500001" + "80a8d6b907" + "026869" + "01" + "0877733a2f2f683a31" + "03683a31" + "00" +
		"01b8170703a1626f" + "00" + "010301" + "524c59494453000100" // then the empty snapshot
	if got := fmt.Sprintf("%x", raw); got != want {
		t.Fatalf("decompressed\n got %s\nwant %s", got, want)
	}
}

// TestEach: one pass in order, stopped by fn's first error, which Each
// returns; FramesBySource groups copies of the frames by source.
func TestEach(t *testing.T) {
	h, recs, snap := testCapture(50)
	file := writeCapture(t, h, recs, snap)
	c, err := OpenReaderAt(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	var got []Record
	stop := errors.New("stop")
	err = c.Each(func(r Record) error {
		r.Frame = bytes.Clone(r.Frame)
		got = append(got, r)
		if len(got) == 20 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Each = %v, want fn's error", err)
	}
	sameRecords(t, got, recs[:20])
	bySource, err := FramesBySource(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if !bytes.Equal(bySource[r.Source][0], r.Frame) {
			t.Fatalf("source %d: frame %x, want %x", r.Source, bySource[r.Source][0], r.Frame)
		}
		bySource[r.Source] = bySource[r.Source][1:]
	}
	for i, rest := range bySource {
		if len(rest) != 0 {
			t.Errorf("source %d: %d frames more than the capture holds", i, len(rest))
		}
	}
}
