//go:build cgo

package memory

import (
	"runtime"
	"sync"
	"testing"
)

// The arena limit binds every thread, the Go runtime's first ones too:
// after threads that never called C before allocate at once, glibc still
// has a single arena. With the limit set from main instead of at load,
// the threads started before main keep arenas of their own (four in the
// relay, measured in /proc/PID/smaps), and this fails.
func TestCAllocatorOneArena(t *testing.T) {
	if !TuneCAllocator() {
		t.Fatal("glibc refused a malloc setting")
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Never unlocked: the thread exits with the goroutine, so each
			// of the eight runs on a thread of its own.
			runtime.LockOSThread()
			<-start
			cMallocTouch(64 << 10)
		}()
	}
	close(start)
	wg.Wait()
	s := ReadCAllocStats()
	if s.Arenas != cArenas {
		t.Fatalf("%d malloc arenas, want %d", s.Arenas, cArenas)
	}
	if s.HeldBytes == 0 || s.InUseBytes > s.HeldBytes {
		t.Fatalf("C allocator holds %d bytes, %d in use", s.HeldBytes, s.InUseBytes)
	}
}
