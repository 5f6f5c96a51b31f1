package memory

// CAllocStats is what the C allocator holds and uses ([ReadCAllocStats]);
// a plain value. Without cgo nothing is allocated in C and every field is
// zero.
type CAllocStats struct {
	// HeldBytes is the memory malloc has from the OS (its arenas' heaps
	// and mmapped chunks): what C allocations add to RSS, at most.
	HeldBytes uint64
	// InUseBytes is the part of it allocated; the rest is free chunks
	// malloc keeps for reuse.
	InUseBytes uint64
	// Arenas is how many arenas malloc has.
	Arenas int
}
