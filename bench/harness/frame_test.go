package harness

import (
	"errors"
	"hash/maphash"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrelay/relay/bench/capture"
)

// scanFrame agrees with capture.PeekFrame (fxamacker/cbor) on the shared
// capture's frames (fixtures captures/realpds-2, both hosts).
func TestScanFrameMatchesPeek(t *testing.T) {
	_, recs := sharedFrames(t, 2, 1500)
	var fi frameInfo
	for _, hr := range recs {
		for _, r := range hr {
			want, err := capture.PeekFrame(r.Frame)
			if err != nil {
				t.Fatal(err)
			}
			if err := scanFrame(r.Frame, &fi); err != nil {
				t.Fatalf("seq %d: %v", r.Seq, err)
			}
			if fi.op != want.Op || string(fi.typ) != want.Type || fi.seq != want.Seq || !fi.hasSeq || string(fi.did) != want.DID {
				t.Fatalf("seq %d: got op %d t %q seq %d did %q, want %+v", r.Seq, fi.op, fi.typ, fi.seq, fi.did, want)
			}
			if (want.Type == "#commit" || want.Type == "#sync") && len(fi.rev) != 13 {
				t.Fatalf("seq %d: rev %q", r.Seq, fi.rev)
			}
		}
	}
}

func TestScanFrameErrors(t *testing.T) {
	good := encodeFrame("#commit", 7, "did:plc:abc", "3kabc")
	f := func(name string, b []byte, want error) {
		t.Helper()
		var fi frameInfo
		if err := scanFrame(b, &fi); !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", name, err, want)
		}
	}
	f("empty", nil, ErrFrameTruncated)
	f("cut", good[:len(good)-2], ErrFrameTruncated)
	f("trailing", append(append([]byte{}, good...), 0), ErrFrameTrailing)
	f("header not map", []byte{0x01}, ErrFrameShape)
	f("int key", []byte{0xa1, 0x01, 0x01}, ErrFrameShape)
	f("indefinite", []byte{0xbf}, ErrFrameIndefinite)
	f("reserved", []byte{0xbc}, ErrFrameReserved)
	f("op as text", []byte{0xa1, 0x62, 'o', 'p', 0x61, 'x', 0xa0}, ErrFrameField)
	f("seq as text", []byte{0xa0, 0xa1, 0x63, 's', 'e', 'q', 0x61, 'x'}, ErrFrameField)
	deep := []byte{0xa0, 0xa1, 0x61, 'x'}
	for range 40 {
		deep = append(deep, 0x81)
	}
	f("deep", append(deep, 0x00), ErrFrameDepth)
	f("huge map count", []byte{0xa0, 0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ErrFrameTruncated)
	var fi frameInfo
	errFrame := []byte{0xa1, 0x62, 'o', 'p', 0x20, 0xa1, 0x65, 'e', 'r', 'r', 'o', 'r', 0x61, 'X'}
	if err := scanFrame(errFrame, &fi); err != nil || fi.op != -1 || string(fi.errStr) != "X" || fi.hasSeq {
		t.Errorf("error frame: %v %+v", err, fi)
	}
}

func TestScanFrameAllocs(t *testing.T) {
	_, recs := sharedFrames(t, 1, 50)
	var fi frameInfo
	if n := testing.AllocsPerRun(100, func() {
		for _, r := range recs[0] {
			scanFrame(r.Frame, &fi)
		}
	}); n != 0 {
		t.Errorf("scanFrame: %v allocs", n)
	}
}

// testConsumer is a consumer without a connection, for feeding handle.
func testConsumer(sched *schedule, expected int64) *consumer {
	c := &consumer{
		sched: sched, epoch: time.Now(), gate: new(atomic.Int64), stopping: new(atomic.Bool), expected: expected,
		dids: map[string]*didState{}, ready: make(chan struct{}), done: make(chan struct{}),
	}
	c.hash.SetSeed(sched.seed)
	return c
}

// Once every DID has been seen, handling a frame allocates nothing.
func TestConsumerHandleAllocs(t *testing.T) {
	_, recs := sharedFrames(t, 1, 300)
	sched := &schedule{seed: maphash.MakeSeed(), sendAt: map[uint64]time.Duration{}}
	c := testConsumer(sched, 1<<62)
	frames := make([][]byte, len(recs[0]))
	for i, r := range recs[0] {
		frames[i] = r.Frame
		c.handle(r.Frame)
	}
	seq := int64(len(frames))
	var fi frameInfo
	for i, f := range frames {
		// Re-sequence so the checks see a clean stream on every pass.
		scanFrame(f, &fi)
		frames[i] = encodeFrame(string(fi.typ), 0, string(fi.did), string(fi.rev))
		if fi.isCommit() {
			sched.sendAt[commitKey(&c.hash, fi.did, fi.rev)] = 0
		}
	}
	before := c.hist.n
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		seq++
		f := frames[i%len(frames)]
		setSeq(f, seq)
		i++
		c.handle(f)
	}); n != 0 {
		t.Errorf("handle: %v allocs", n)
	}
	if c.badFrames != 0 || c.gaps != 0 || c.backward != 0 || c.hist.n == before {
		t.Errorf("bad %d gaps %d backward %d latencies %d", c.badFrames, c.gaps, c.backward, c.hist.n-before)
	}
}

// setSeq overwrites the 8-byte seq encodeFrame writes.
func setSeq(f []byte, seq int64) {
	for i := range len(f) - 4 {
		if string(f[i:i+4]) == "\x63seq" && f[i+4] == 0x1b {
			for k := range 8 {
				f[i+5+k] = byte(seq >> (56 - 8*k))
			}
			return
		}
	}
}

func BenchmarkScanFrame(b *testing.B) {
	_, recs := sharedFrames(b, 1, 1000)
	var fi frameInfo
	var n int64
	for _, r := range recs[0] {
		n += int64(len(r.Frame))
	}
	b.SetBytes(n / int64(len(recs[0])))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		scanFrame(recs[0][i%len(recs[0])].Frame, &fi)
		i++
	}
}

// BenchmarkConsumerHandle measures a consumer's per-message work: scan,
// seq and rev checks, latency lookup and record. "real" feeds the shared
// capture's frames (seqs restart every pass, so later passes count as
// backward, at the same cost); "minimal" feeds re-encoded frames with
// only the fields the harness reads.
func BenchmarkConsumerHandle(b *testing.B) {
	_, recs := sharedFrames(b, 1, 1000)
	sched := &schedule{seed: maphash.MakeSeed(), sendAt: map[uint64]time.Duration{}}
	var fi frameInfo
	minimal := make([][]byte, len(recs[0]))
	real := make([][]byte, len(recs[0]))
	var h maphash.Hash
	h.SetSeed(sched.seed)
	for i, r := range recs[0] {
		scanFrame(r.Frame, &fi)
		real[i] = r.Frame
		minimal[i] = encodeFrame(string(fi.typ), int64(i+1), string(fi.did), string(fi.rev))
		sched.sendAt[commitKey(&h, fi.did, fi.rev)] = 0
	}
	b.Run("real", func(b *testing.B) {
		c := testConsumer(sched, 1<<62)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c.handle(real[i%len(real)])
			i++
		}
	})
	b.Run("minimal", func(b *testing.B) {
		c := testConsumer(sched, 1<<62)
		b.ReportAllocs()
		seq, i := int64(0), 0
		for b.Loop() {
			seq++
			f := minimal[i%len(minimal)]
			setSeq(f, seq)
			i++
			c.handle(f)
		}
	})
}

func FuzzScanFrame(f *testing.F) {
	f.Add(encodeFrame("#commit", 1, "did:plc:abc", "3kabc"))
	f.Add(encodeFrame("#identity", 1<<40, "did:web:x", ""))
	f.Add([]byte{0xa1, 0x62, 'o', 'p', 0x20, 0xa1, 0x65, 'e', 'r', 'r', 'o', 'r', 0x61, 'X'})
	f.Add([]byte{0xa0, 0xa1, 0x61, 'x', 0xd8, 0x2a, 0x45, 0, 1, 2, 3, 4})
	f.Add([]byte{0xa0, 0xa2, 0x61, 'a', 0xfb, 0, 0, 0, 0, 0, 0, 0, 0, 0x61, 'b', 0x82, 0xf5, 0xf6})
	f.Fuzz(func(t *testing.T, b []byte) {
		var fi frameInfo
		if scanFrame(b, &fi) != nil {
			return
		}
		// Whatever decoded must alias the input.
		for _, s := range [][]byte{fi.typ, fi.did, fi.rev, fi.errStr} {
			if len(s) > len(b) {
				t.Fatalf("field longer than frame")
			}
		}
	})
}
