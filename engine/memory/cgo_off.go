//go:build !cgo

package memory

// cgoEnabled reports whether this binary was built with cgo, which decides
// where Pebble's manual allocator takes memory from (see PebbleOffHeap).
const cgoEnabled = false

// TuneCAllocator does nothing without cgo, where nothing is allocated in C;
// it reports true.
func TuneCAllocator() bool { return true }

// CAllocStats is what the C allocator holds and uses; a plain value.
// Without cgo nothing is allocated in C and every field is zero.
type CAllocStats struct {
	HeldBytes  uint64
	InUseBytes uint64
	Arenas     int
}

// ReadCAllocStats returns zeros: without cgo there is no C allocator in use.
func ReadCAllocStats() CAllocStats { return CAllocStats{} }
