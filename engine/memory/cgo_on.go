//go:build cgo

package memory

/*
#include <malloc.h>

// The glibc knobs TuneCAllocator sets; see its doc comment for the why.
static int relay_tune_malloc(int arenas, int mmap_threshold, int trim_threshold) {
	int ok = 1;
	ok &= mallopt(M_ARENA_MAX, arenas);
	ok &= mallopt(M_MMAP_THRESHOLD, mmap_threshold);
	ok &= mallopt(M_TRIM_THRESHOLD, trim_threshold);
	return ok;
}
*/
import "C"

// cgoEnabled reports whether this binary was built with cgo, which decides
// where Pebble's manual allocator takes memory from (see PebbleOffHeap).
const cgoEnabled = true

// C allocator settings applied by TuneCAllocator.
const (
	// cArenas caps glibc's malloc arenas. By default glibc gives each
	// thread that calls malloc its own arena, up to 8 per core, each keeping
	// its freed memory: measured on the relay, seven arenas held 2–4 MiB each
	// for a few hundred KiB of live C data. C allocations here are rare
	// (Pebble's cache blocks and memtables), so one shared arena costs no
	// measurable contention.
	cArenas = 1
	// cMmapThreshold fixes the size above which malloc maps memory of its own
	// and unmaps it on free. glibc otherwise raises the threshold after each
	// such free (up to 32 MiB), after which Pebble's memtables come from the
	// arena and their memory stays resident after they are flushed.
	cMmapThreshold = 256 << 10
	// cTrimThreshold is the free memory at the top of the arena above which
	// free returns it to the OS: the malloc_trim of the Zig relay, done by
	// glibc itself on every free.
	cTrimThreshold = 1 << 20
)

// TuneCAllocator configures glibc's malloc for a process whose C
// allocations are few and large (see the constants above) and reports
// whether every setting was accepted. Call it once, early in main, before
// the threads that allocate in C exist. It changes process-wide state.
func TuneCAllocator() bool {
	return C.relay_tune_malloc(cArenas, cMmapThreshold, cTrimThreshold) == 1
}
