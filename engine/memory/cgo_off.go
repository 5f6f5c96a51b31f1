//go:build !cgo

package memory

// cgoEnabled reports whether this binary was built with cgo, which decides
// where Pebble's manual allocator takes memory from (see PebbleOffHeap).
const cgoEnabled = false

// cArenas is zero: without cgo there is no C allocator to limit.
const cArenas = 0

// TuneCAllocator does nothing without cgo, where nothing is allocated in C;
// it reports true.
func TuneCAllocator() bool { return true }

// ReadCAllocStats returns zeros: without cgo there is no C allocator in use.
func ReadCAllocStats() CAllocStats { return CAllocStats{} }
