package store

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSustainedAppendCPU appends 300,000 real frames (batches of 512,
// no fsync), waits until Pebble has no compaction running, and reports
// the process CPU time (user + system, getrusage) per event: the cost of the
// store including the background flushes and compactions that a latency
// benchmark does not see. Run it with -benchtime=1x.
func BenchmarkSustainedAppendCPU(b *testing.B) {
	const events = 300_000
	frames := loadFrames(b)
	for _, sep := range []bool{false, true} {
		b.Run(fmt.Sprintf("valueSeparation=%t", sep), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				s, err := Open(b.TempDir(), Options{Sync: NoSync, RetentionInterval: 1 << 40, InlineValues: !sep})
				if err != nil {
					b.Fatal(err)
				}
				h, _ := s.CreateHost(NewHost{Hostname: "bench.example", Status: HostActive})
				feed := newEventFeed(frames, h.ID)
				batch := make([]Event, 512)
				before := cpuTime()
				for done := 0; done < events; done += len(batch) {
					feed.fill(batch)
					if err = feed.append(s, batch); err != nil {
						b.Fatal(err)
					}
				}
				if err := s.db.Flush(); err != nil {
					b.Fatal(err)
				}
				// Quiet: no compaction running at two checks 200 ms apart.
				for quiet := 0; quiet < 2; {
					time.Sleep(200 * time.Millisecond)
					if s.db.Metrics().Compact.NumInProgress == 0 {
						quiet++
					} else {
						quiet = 0
					}
				}
				cpu := cpuTime() - before
				b.ReportMetric(float64(cpu.Microseconds())/events, "cpu-µs/event")
				m := s.db.Metrics()
				b.ReportMetric(float64(s.Stats().DiskBytes)/events, "diskB/event")
				b.ReportMetric(float64(uint64(m.Total().TablesSize)+m.BlobFiles.LiveSize)/events, "dataB/event")
				s.Close()
			}
		})
	}
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
