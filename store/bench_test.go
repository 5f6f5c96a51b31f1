package store

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/atrelay/relay/internal/fixtures"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// captureFrames returns the real frames of capture realpds-2, host 0
// (shared/captures/realpds-2/FORMAT.md: uvarint(len) ‖ frame records),
// read once per test binary.
var captureFrames = sync.OnceValues(func() ([][]byte, error) {
	return fixtures.CaptureFrames(fixtures.RealPDS2Host(0))
})

func loadFrames(tb testing.TB) [][]byte {
	tb.Helper()
	frames, err := captureFrames()
	if err != nil {
		tb.Fatalf("reading capture: %v", err)
	}
	return frames
}

// eventFeed produces commit events over 1,000 accounts with growing revs,
// each carrying a real captured frame.
type eventFeed struct {
	frames [][]byte
	batch  [][]byte // the frame of each event of the last fill
	revs   [][]byte
	dids   [][]byte
	n      int
	host   HostID
	w      testWriter
}

func newEventFeed(frames [][]byte, host HostID) *eventFeed {
	f := &eventFeed{frames: frames, host: host}
	for i := 0; i < 1000; i++ {
		f.dids = append(f.dids, did(i))
	}
	return f
}

// fill sets batch to the next len(batch) events, reusing its memory.
func (f *eventFeed) fill(batch []Event) {
	if len(f.batch) < len(batch) {
		f.batch = make([][]byte, len(batch))
		f.revs = make([][]byte, len(batch))
	}
	for i := range batch {
		f.n++
		f.batch[i] = f.frames[f.n%len(f.frames)]
		f.revs[i] = appendRev(f.revs[i][:0], f.n)
		batch[i] = Event{
			Kind: KindCommit, DID: f.dids[f.n%len(f.dids)],
			Host: f.host, Cursor: uint64(f.n), Rev: f.revs[i],
			Commit: f.revs[i], Data: f.revs[i],
		}
	}
}

// append writes batch (filled by fill) as one group commit, each logged
// event with its captured frame as it is: the store does not read the seq
// inside.
func (f *eventFeed) append(s *Store, batch []Event) error {
	return f.w.write(s, batch, f.frame)
}

func (f *eventFeed) frame(i int, _ Seq) []byte { return f.batch[i] }

// appendRev appends rev(n)'s bytes without allocating.
func appendRev(dst []byte, n int) []byte {
	dst = append(dst, "3n00000000000"...)
	for i := len(dst) - 1; n > 0; i-- {
		dst[i] = byte('0' + n%10)
		n /= 10
	}
	return dst
}

func meanFrameBytes(frames [][]byte) float64 {
	total := 0
	for _, fr := range frames {
		total += len(fr)
	}
	return float64(total) / float64(len(frames))
}

// BenchmarkAppend measures durable appends (one fsync per batch) of real
// frames with their account and cursor updates, on the OS filesystem.
// One op is one event.
func BenchmarkAppend(b *testing.B) {
	frames := loadFrames(b)
	for _, size := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{RetentionInterval: 1 << 40})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			h, _ := s.CreateHost(NewHost{Hostname: "bench.example", Status: HostActive})
			feed := newEventFeed(frames, h.ID)
			batch := make([]Event, size)
			b.SetBytes(int64(meanFrameBytes(frames) * float64(size)))
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += size {
				feed.fill(batch)
				if err = feed.append(s, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.SetBytes(int64(meanFrameBytes(frames)))
		})
	}
}

// BenchmarkReplay measures one reader replaying real frames from a
// database of 50,000 events. One op is one event.
func BenchmarkReplay(b *testing.B) {
	s, n := filledStore(b, b.TempDir(), 50_000)
	defer s.Close()
	b.ReportAllocs()
	b.ResetTimer()
	var bytes int64
	for done := 0; done < b.N; {
		it, err := s.NewIterator(0)
		if err != nil {
			b.Fatal(err)
		}
		for done < b.N && it.Next() {
			bytes += int64(len(it.Frame()))
			done++
		}
		if err := it.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.SetBytes(bytes / int64(max(b.N, 1)))
	st := s.Stats()
	b.ReportMetric(float64(st.BlockCacheBytes+int64(st.MemTableBytes))/(1<<20), "cacheMiB")
	_ = n
}

// BenchmarkDiskBytesPerEvent appends 50,000 real frames, compacts, and
// reports the disk bytes per event against the mean raw frame size.
func BenchmarkDiskBytesPerEvent(b *testing.B) {
	frames := loadFrames(b)
	for i := 0; i < b.N; i++ {
		s, n := filledStore(b, b.TempDir(), 50_000)
		if err := s.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
			b.Fatal(err)
		}
		st := s.Stats()
		b.ReportMetric(float64(st.DiskBytes)/float64(n), "diskB/event")
		b.ReportMetric(float64(s.Pebble().Total().TablesSize)/float64(n), "sstB/event")
		b.ReportMetric(meanFrameBytes(frames), "frameB/event")
		s.Close()
	}
}

// filledStore opens a store in dir and appends n real frames to it in
// batches of 512, without fsync.
func filledStore(tb testing.TB, dir string, n int) (*Store, int) {
	tb.Helper()
	s, err := Open(dir, Options{Sync: NoSync, RetentionInterval: 1 << 40})
	if err != nil {
		tb.Fatal(err)
	}
	h, _ := s.CreateHost(NewHost{Hostname: "bench.example", Status: HostActive})
	feed := newEventFeed(loadFrames(tb), h.ID)
	batch := make([]Event, 512)
	for done := 0; done < n; done += len(batch) {
		feed.fill(batch)
		if err := feed.append(s, batch); err != nil {
			tb.Fatal(err)
		}
	}
	return s, n - n%512 + 512*min(n%512, 1)
}

// allocsStore is an in-memory store, closed at cleanup, and a feed of
// 100 real frames for one host of it, for the allocation tests; it skips
// the test under -race, where allocation counts differ.
func allocsStore(t *testing.T) (*Store, *eventFeed) {
	t.Helper()
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	s := openTest(t, testOptions(vfs.NewMem()))
	t.Cleanup(func() { _ = s.Close() })
	h := mustHost(t, s, "a.example")
	return s, newEventFeed(loadFrames(t)[:100], h.ID)
}

// TestAppendAllocs holds Append's steady-state allocations per batch.
func TestAppendAllocs(t *testing.T) {
	s, feed := allocsStore(t)
	batch := make([]Event, 64)
	for i := 0; i < 50; i++ { // warm buffers, maps and every account
		feed.fill(batch)
		_ = feed.append(s, batch)
	}
	allocs := testing.AllocsPerRun(100, func() {
		feed.fill(batch)
		if err := feed.append(s, batch); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("Stage+Commit: %.1f allocs per 64-event batch", allocs)
	if allocs > appendAllocsPerBatch {
		t.Fatalf("Stage+Commit: %.1f allocs per 64-event batch, want ≤ %d", allocs, appendAllocsPerBatch)
	}
}

// TestReplayAllocs holds replay at zero allocations per event.
func TestReplayAllocs(t *testing.T) {
	s, feed := allocsStore(t)
	batch := make([]Event, 512)
	feed.fill(batch)
	if err := feed.append(s, batch); err != nil {
		t.Fatal(err)
	}
	it, err := s.NewIterator(0)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	allocs := testing.AllocsPerRun(500, func() {
		if !it.Next() {
			t.Fatal("log ended early")
		}
	})
	if allocs != 0 {
		t.Fatalf("Iterator.Next: %.2f allocs per event", allocs)
	}
}

// appendAllocsPerBatch bounds one 64-event Append at steady state. The
// store's own code allocates nothing; the measured 14 come from Pebble's
// Get building sstable point iterators for account reads (about 0.2 per
// event), plus memtable rotations.
const appendAllocsPerBatch = 16
