package memory

import (
	"bytes"
	"errors"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
)

// spikeBytes is the size of the heap spike the trimmer tests create and drop.
const spikeBytes = 128 << 20

// makeIdleHeap allocates and touches a large slice, drops it and collects, so
// that the heap holds spikeBytes idle but not yet released.
func makeIdleHeap() {
	b := make([]byte, spikeBytes)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	runtime.KeepAlive(b)
	runtime.GC()
}

func newTestTrimmer(t *testing.T, cfg Config) (*Trimmer, *vm.Set) {
	t.Helper()
	log, _ := testLog()
	set := vm.NewSet()
	tr, err := NewTrimmer(cfg, set, log)
	if err != nil {
		t.Fatal(err)
	}
	return tr, set
}

func TestTrimmerTrimsAboveThresholdAndRespectsInterval(t *testing.T) {
	// Keep the runtime from returning the spike on its own before check runs.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	defer debug.SetGCPercent(debug.SetGCPercent(100))

	tr, set := newTestTrimmer(t, Config{TrimInterval: time.Minute, TrimThreshold: 16 << 20})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	makeIdleHeap()
	trimmed, returned := tr.check(t0)
	if !trimmed || returned == 0 {
		t.Fatalf("check after a %d-byte spike: trimmed %t, returned %d", spikeBytes, trimmed, returned)
	}
	if tr.runs.Load() != 1 || tr.returnedBytes.Load() != returned || tr.lastFree.Load() > 16<<20 {
		t.Fatalf("after trim: runs %d, returned %d (want %d), idle %d",
			tr.runs.Load(), tr.returnedBytes.Load(), returned, tr.lastFree.Load())
	}

	makeIdleHeap()
	if trimmed, _ := tr.check(t0.Add(59 * time.Second)); trimmed {
		t.Fatal("trimmed again within the interval")
	}
	if tr.lastFree.Load() <= 16<<20 {
		t.Fatalf("spike not idle before the second check: %d", tr.lastFree.Load())
	}
	if trimmed, _ := tr.check(t0.Add(time.Minute)); !trimmed {
		t.Fatal("did not trim once the interval had passed")
	}
	if got := tr.runs.Load(); got != 2 {
		t.Fatalf("runs = %d, want 2", got)
	}
	if got := tr.checks.Load(); got != 3 {
		t.Fatalf("checks = %d, want 3", got)
	}

	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for _, want := range []string{
		"relay_memory_trim_runs_total 2\n",
		"relay_memory_trim_checks_total 3\n",
		"# HELP relay_memory_trim_returned_bytes_total ",
		"# TYPE relay_memory_trim_seconds_total counter\n",
		"relay_memory_trim_threshold_bytes 1.6777216e+07\n",
		"relay_memory_trim_interval_seconds 60\n",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("exposition lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestTrimmerBelowThreshold(t *testing.T) {
	tr, _ := newTestTrimmer(t, Config{TrimThreshold: 1 << 50})
	if trimmed, _ := tr.check(time.Now()); trimmed {
		t.Fatal("trimmed below the threshold")
	}
	if tr.runs.Load() != 0 || tr.checks.Load() != 1 {
		t.Fatalf("runs %d checks %d", tr.runs.Load(), tr.checks.Load())
	}
}

func TestTrimmerCheckDoesNotAllocate(t *testing.T) {
	tr, _ := newTestTrimmer(t, Config{TrimThreshold: 1 << 50})
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() { tr.check(now) }); n != 0 {
		t.Fatalf("check allocates %v times per call", n)
	}
}

func TestTrimmerStartStop(t *testing.T) {
	tr, _ := newTestTrimmer(t, Config{TrimInterval: 4 * time.Millisecond, TrimThreshold: 1 << 50})
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Stop)
	if err := tr.Start(); !errors.Is(err, ErrTrimmerRunning) {
		t.Fatalf("second Start = %v, want ErrTrimmerRunning", err)
	}
	tr.Stop()
	tr.Stop()
	if err := tr.Start(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	tr.Stop()
	// Stop returns once run has closed done; the goroutine may still be on
	// its way out, so give it a bounded number of chances to disappear.
	for i := 0; trimmerGoroutines() > 0; i++ {
		if i == 1000 {
			t.Fatalf("trimmer goroutine still running after Stop:\n%s", allStacks())
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// allStacks returns every goroutine's stack.
func allStacks() []byte {
	buf := make([]byte, 1<<20)
	return buf[:runtime.Stack(buf, true)]
}

// trimmerGoroutines counts goroutines running Trimmer.run.
func trimmerGoroutines() int {
	return bytes.Count(allStacks(), []byte("memory.(*Trimmer).run("))
}

func TestNewTrimmerRejectsBadConfig(t *testing.T) {
	log, _ := testLog()
	if _, err := NewTrimmer(Config{TrimInterval: -1}, vm.NewSet(), log); !errors.Is(err, ErrNegativeTrimInterval) {
		t.Fatalf("NewTrimmer(negative interval) = %v", err)
	}
}

func TestTrimmerLoopTrims(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	tr, _ := newTestTrimmer(t, Config{TrimInterval: 4 * time.Millisecond, TrimThreshold: 1 << 20})
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	defer tr.Stop()
	// No deadline of our own: the loop must trim eventually, and go test's
	// timeout bounds the wait if it never does.
	for tr.runs.Load() == 0 {
		makeIdleHeap()
		time.Sleep(time.Millisecond)
	}
}

// TestTrimmerWakesAfterGC: with a poll period of 15 minutes, only the
// end-of-GC notice can make the trimmer run within the test's lifetime.
func TestTrimmerWakesAfterGC(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tr, _ := newTestTrimmer(t, Config{TrimInterval: time.Hour, TrimThreshold: 1 << 20})
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	defer tr.Stop()
	makeIdleHeap()
	for tr.runs.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	// Stopped, the notices stop too: a collection leaves the count alone.
	tr.Stop()
	checks := tr.checks.Load()
	makeIdleHeap()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if got := tr.checks.Load(); got != checks {
		t.Fatalf("checks went from %d to %d after Stop", checks, got)
	}
}
