package memory

// Shares is how the relay divides its memory budget between the consumers
// large enough to matter. Every figure is in bytes. The Go heap gets what is
// left after OffHeap; GOMEMLIMIT is sized from that (see the package doc).
//
// The split, for a budget B (each clamped to the bounds in [SharesOf]):
//
//	BlockCache    B/16   Pebble block cache (off heap under cgo)
//	MemTable      B/128  one Pebble memtable; up to 4 exist (off heap under cgo)
//	Ring          B/4    the firehose ring of recent frames (Go heap), ≤ 1 GiB:
//	                     about an hour of the live network, older frames
//	                     are read from Pebble
//	IdentityCache B/8    resolved DID documents (Go heap)
//	Intake        B/16   frames queued for the validation workers (Go heap)
//	Results       B/16   validated frames waiting for the sequencer (Go heap)
//	Resync        B/32   repositories being resynced: fetched CARs and their
//	                     verification scratch (Go heap), 8 MiB–256 MiB;
//	                     about half of it bounds the largest repository
//	                     the relay can resync
//	TrimThreshold B/64   idle heap above which the trimmer returns memory
//
// Together the shares are at most 3/4 of B including the four memtables; the
// rest is GC headroom, runtime metadata and the binary. The ring gets the
// largest share because it is what keeps consumers off the disk, and because
// memory the Go heap holds live is memory the trimmer can account for: the
// off-heap shares are kept small (PERF.md, Memory, measures the effect).
type Shares struct {
	BlockCache    int64
	MemTable      int64
	Ring          int64
	IdentityCache int64
	Intake        int64
	Results       int64
	Resync        int64
	TrimThreshold int64
}

// MemTablesInMemory is how many memtables Pebble may hold before it stops
// writes (store's MemTableStopWritesThreshold): the off-heap reservation
// counts that many.
const MemTablesInMemory = 4

// SharesOf splits budget (bytes, > 0) as documented on [Shares]. Small
// budgets get the lower bounds, large ones the upper bounds, so a 24 GiB
// machine does not hand Pebble 1.5 GiB of cache it will never fill.
func SharesOf(budget int64) Shares {
	const mib = 1 << 20
	return Shares{
		BlockCache:    clamp(budget/16, 8*mib, 1<<30),
		MemTable:      clamp(budget/128, 4*mib, 64*mib),
		Ring:          clamp(budget/4, 16*mib, 1<<30),
		IdentityCache: clamp(budget/8, 16*mib, 8<<30),
		Intake:        clamp(budget/16, 16*mib, 512*mib),
		Results:       clamp(budget/16, 16*mib, 256*mib),
		Resync:        clamp(budget/32, 8*mib, 256*mib),
		TrimThreshold: clamp(budget/64, 8*mib, 256*mib),
	}
}

// OffHeap is the part of s allocated outside the Go heap in this build (see
// [PebbleOffHeap]).
func (s Shares) OffHeap() int64 {
	return PebbleOffHeap(s.BlockCache, s.MemTable, MemTablesInMemory)
}

func clamp(v, lo, hi int64) int64 {
	return min(max(v, lo), hi)
}
