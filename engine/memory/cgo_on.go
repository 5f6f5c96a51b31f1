//go:build cgo

package memory

/*
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The glibc knobs set at load; see TuneCAllocator for the why.
#define RELAY_C_ARENAS 1
#define RELAY_C_MMAP_THRESHOLD (256 << 10)
#define RELAY_C_TRIM_THRESHOLD (1 << 20)

static int relay_malloc_tuned;

// Runs when the binary is loaded, before the Go runtime starts a thread:
// glibc gives every thread that mallocs an arena of its own while there
// are fewer than M_ARENA_MAX, so a limit set later, from main, leaves the
// arenas of the threads that came first (the Go runtime's own thread
// starts malloc) in use for the life of the process.
__attribute__((constructor)) static void relay_tune_malloc(void) {
	int ok = 1;
	ok &= mallopt(M_ARENA_MAX, RELAY_C_ARENAS);
	ok &= mallopt(M_MMAP_THRESHOLD, RELAY_C_MMAP_THRESHOLD);
	ok &= mallopt(M_TRIM_THRESHOLD, RELAY_C_TRIM_THRESHOLD);
	relay_malloc_tuned = ok;
}

static int relay_malloc_result(void) { return relay_malloc_tuned; }

// What the C allocator holds and uses, over all its arenas.
typedef struct {
	size_t held;   // from the OS: arenas' heaps plus mmapped chunks
	size_t in_use; // allocated chunks, mmapped ones included
	int arenas;
} relay_c_stats;

static relay_c_stats relay_malloc_stats(void) {
	relay_c_stats s = {0};
	struct mallinfo2 mi = mallinfo2();
	s.held = mi.arena + mi.hblkhd;
	s.in_use = mi.uordblks + mi.hblkhd;
	// malloc_info writes one <heap nr="..."> element per arena.
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (f != NULL) {
		malloc_info(0, f);
		fclose(f);
		for (char *p = buf; p != NULL && (p = strstr(p, "<heap nr=")) != NULL; p++) {
			s.arenas++;
		}
		free(buf);
	}
	return s;
}

// relay_malloc_touch allocates and frees n bytes: a test's way to make
// the calling thread take an arena.
static void relay_malloc_touch(size_t n) {
	void *volatile p = malloc(n);
	free(p);
}
*/
import "C"

// cgoEnabled reports whether this binary was built with cgo, which decides
// where Pebble's manual allocator takes memory from (see PebbleOffHeap).
const cgoEnabled = true

// C allocator settings, applied when the binary is loaded.
const (
	// cArenas caps glibc's malloc arenas. By default glibc gives each
	// thread that calls malloc its own arena, up to 8 per core, each keeping
	// its freed memory: measured on the relay, seven arenas held 2–4 MiB each
	// for a few hundred KiB of live C data, and with the limit set from main
	// (too late: the Go runtime's first threads had arenas already) four
	// arenas held 86 MiB for Pebble's 59 MiB of cache and memtables. C
	// allocations here are rare (Pebble's cache blocks and memtables), so
	// one shared arena costs no measurable contention.
	cArenas = C.RELAY_C_ARENAS
	// cMmapThreshold fixes the size above which malloc maps memory of its own
	// and unmaps it on free. glibc otherwise raises the threshold after each
	// such free (up to 32 MiB), after which Pebble's memtables come from the
	// arena and their memory stays resident after they are flushed.
	cMmapThreshold = C.RELAY_C_MMAP_THRESHOLD
	// cTrimThreshold is the free memory at the top of the arena above which
	// free returns it to the OS: the malloc_trim of the Zig relay, done by
	// glibc itself on every free.
	cTrimThreshold = C.RELAY_C_TRIM_THRESHOLD
)

// TuneCAllocator reports whether glibc accepted every setting above. They
// are applied by a C constructor when the binary is loaded, before any
// thread exists, because an arena limit only binds threads that have not
// allocated yet; calling this changes nothing.
func TuneCAllocator() bool {
	return C.relay_malloc_result() == 1
}

// ReadCAllocStats reads the C allocator's figures. It takes each arena's
// lock and walks its free lists, so call it at scrape rate, not per event.
func ReadCAllocStats() CAllocStats {
	s := C.relay_malloc_stats()
	return CAllocStats{HeldBytes: uint64(s.held), InUseBytes: uint64(s.in_use), Arenas: int(s.arenas)}
}

// cMallocTouch allocates and frees n bytes in C on the calling thread.
func cMallocTouch(n int) { C.relay_malloc_touch(C.size_t(n)) }
