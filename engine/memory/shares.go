package memory

// Shares is how the relay divides its memory budget between the consumers
// large enough to matter. Every figure is in bytes. The budget B is spent
// as follows; [Ledger] lists the same items for a running relay and the
// tests check that they add up to at most B for every budget from
// [MinBudget] up:
//
//	ProcessOverhead  max(B/10, 32 MiB)  what neither GOMEMLIMIT nor a share
//	                 sees: the binary's resident pages (~20 MiB), cgo thread
//	                 stacks and C allocations (libsecp256k1), C allocator
//	                 fragmentation
//	BlockCache       B/16   Pebble block cache (off heap under cgo), 2 MiB–1 GiB
//	MemTable         B/128  one Pebble memtable, 1–64 MiB; up to 4 exist
//	                 (off heap under cgo)
//	FixedGo          16 MiB Go memory no share covers: runtime metadata,
//	                 goroutine stacks, tables sized at start (the ring's slot
//	                 array), Pebble's Go-side state, metrics
//	Go heap shares, each a bound its component enforces:
//	  Ring           B/8    the firehose ring of recent frames, ≤ 1 GiB:
//	                 live consumers read from it, older frames are read
//	                 from Pebble
//	  IdentityCache  B/16   resolved DID documents in memory (the rest are
//	                 on disk, a Pebble read away)
//	  Hosts          B/4    subscribed hosts, ≤ 512 MiB (~6,000 TLS hosts): each holds its
//	                 connection, crypto/tls's record buffers and the
//	                 relay's state for as long as it is subscribed, so the
//	                 relay's MaxHosts is this over one host's worst case
//	  Overlay        B/64   the validation workers' cache of account states,
//	                 ≤ 256 MiB (relay OverlayBytes); a miss is a Pebble read
//	  Upstream       B/32   buffers of messages in flight from PDS hosts,
//	                 first byte to delivery (upstream.Config.MaxBufferedBytes)
//	  Intake         B/32   delivered frames queued for the validation
//	                 workers, and parked while their identity resolves
//	                 (buffer capacity), ≤ 256 MiB; counted twice: held
//	                 results can pass their bound by what the intake held
//	                 when their hosts were paused
//	  Results        B/16   validated output frames: the group commit's
//	                 Pebble batch (relay.GroupCommitBytes), then half of
//	                 the rest in transit to the sequencer, half held for
//	                 host order (relay ResultsQueueBytes and MaxHeldBytes)
//	  Resync         B/32   repositories being resynced: fetched CARs and
//	                 their verification scratch, 1–256 MiB; about half of it
//	                 bounds the largest repository the relay can resync
//	  Consumers      B/64   firehose consumers: MaxConsumers is this over one
//	                 consumer's bound (firehose.Config.ConsumerBytes)
//	  HTTP           B/128  the public listener's HTTP: at least one list
//	                 request's page (xrpc.ListRequestBytes; a splitter's
//	                 requests passed through), up to a quarter of it, and
//	                 connections not (yet) hijacked, the rest: requests being
//	                 read or answered, idle keep-alive ones (cmd/relay
//	                 httpConnBytes); 4 MiB at least
//	  Jetstream      B/64   Jetstream subscribers: MaxSubscribers is what is
//	                 left of this after the compressors and the backlog the
//	                 subscribers share over one subscriber's bound
//	                 (jetstream.Config.SubscriberBytes, SharedBytes)
//	GC headroom      the rest, at least a third of the heap shares plus
//	                 FixedGo: GOMEMLIMIT is B − ProcessOverhead − off heap,
//	                 so the collector keeps the heap under it with the live
//	                 heap at most three quarters of it
//
// `relay splitter` has no hosts, identities or validation: its consumers
// get those shares ([Shares.ForSplitter]).
//
// TrimThreshold (B/64, 4–256 MiB) is not memory held: it is the idle heap
// above which the trimmer returns memory to the OS.
//
// The fractions are what a large budget gets (upper bounds aside); when
// the heap shares would leave too little GC headroom, as they do below
// about 1.5 GiB, the ring and the identity cache (caches with Pebble
// behind them) give up to half of themselves first, then all the heap
// shares are scaled down alike, never below a floor of 0.25–2 MiB each
// (2 MiB for Jetstream: a compressor and one subscriber). The hosts share
// is counted at a TLS host's worst case (about 88 KiB: a hostile host's
// largest certificate chain and records), so 1 GiB holds the live
// network's ~2,800 hosts and 512 MiB about 1,500 (PERF.md, Production
// scale). Memory the Go heap holds live is memory the trimmer can account
// for: the off-heap shares are kept small (PERF.md, Memory, measures the
// effect).
//
// Not in a share, and so not bounded by the budget: kernel socket buffers
// (charged to the cgroup, not RSS), and one message near the 5 MB frame
// limit, which takes about four times its size across the pipeline at once
// (assumed rare: real frames are under 2 MB).
type Shares struct {
	BlockCache    int64
	MemTable      int64
	Ring          int64
	IdentityCache int64
	Hosts         int64
	Overlay       int64
	Upstream      int64
	Intake        int64
	Results       int64
	Resync        int64
	Consumers     int64
	HTTP          int64
	Jetstream     int64
	TrimThreshold int64
}

// MemTablesInMemory is how many memtables Pebble may hold before it stops
// writes (store's MemTableStopWritesThreshold): the off-heap reservation
// counts that many.
const MemTablesInMemory = 4

// FixedGoBytes is the Go memory no share covers (see [Shares]): an idle
// relay's Go memory is ~16 MiB, most of it tables sized at start.
const FixedGoBytes = 16 << 20

// MinProcessOverhead is the least of the budget kept for memory neither
// GOMEMLIMIT nor a share sees (see [ProcessOverhead]).
const MinProcessOverhead = 32 << 20

// ProcessOverhead is the part of budget kept for memory the Go runtime and
// the shares do not see: the binary's resident pages, cgo thread stacks
// and C allocations, C allocator fragmentation. A tenth of the budget, at
// least MinProcessOverhead: the binary alone is ~20 MiB resident.
func ProcessOverhead(budget int64) int64 {
	return max(budget/10, MinProcessOverhead)
}

// SharesOf splits budget (bytes, > 0) as documented on [Shares]. Small
// budgets get their heap shares scaled down, large ones the upper bounds,
// so a 24 GiB machine does not hand Pebble 1.5 GiB of cache it will never
// fill.
func SharesOf(budget int64) Shares {
	const mib = 1 << 20
	s := Shares{
		BlockCache:    clamp(budget/16, 2*mib, 1<<30),
		MemTable:      clamp(budget/128, 1*mib, 64*mib),
		Ring:          clamp(budget/8, 2*mib, 1<<30),
		IdentityCache: clamp(budget/16, 1*mib, 8<<30),
		Hosts:         clamp(budget/4, 1*mib, 512*mib),
		Overlay:       clamp(budget/64, mib/4, 256*mib),
		Upstream:      clamp(budget/32, 1*mib, 256*mib),
		Intake:        clamp(budget/32, 1*mib, 256*mib),
		Results:       clamp(budget/16, 1*mib, 256*mib),
		Resync:        clamp(budget/32, 1*mib, 256*mib),
		Consumers:     clamp(budget/64, mib/2, 1<<30),
		HTTP:          clamp(budget/128, 4*mib, 128*mib),
		Jetstream:     clamp(budget/64, 2*mib, 1<<30),
		TrimThreshold: clamp(budget/64, 4*mib, 256*mib),
	}
	// The heap shares and FixedGo may take three quarters of what the Go
	// runtime gets, counting the memtables and cache as if on the heap
	// (they are without cgo).
	// What is above the floors then shrinks alike until they fit.
	avail := (budget-ProcessOverhead(budget)-s.Pebble())*3/4 - FixedGoBytes
	heap := s.Heap()
	if heap <= avail || budget < 0 {
		return s
	}
	// The ring and the identity cache are caches with Pebble behind them:
	// they give up to half of themselves first, alike.
	caches := s.Ring + s.IdentityCache
	if cut := min(heap-avail, caches/2); cut > 0 {
		s.Ring -= s.Ring * cut / caches
		s.IdentityCache -= s.IdentityCache * cut / caches
		heap = s.Heap()
		if heap <= avail {
			return s
		}
	}
	scaled := []struct {
		v            *int64
		floor, count int64 // count: times Heap counts it
	}{
		{&s.Ring, 2 * mib, 1}, {&s.IdentityCache, mib, 1}, {&s.Hosts, mib, 1}, {&s.Overlay, mib / 4, 1},
		{&s.Upstream, mib, 1}, {&s.Intake, mib, 2},
		{&s.Results, mib, 1}, {&s.Resync, mib, 1}, {&s.Consumers, mib / 2, 1}, {&s.HTTP, 4 * mib, 1},
		{&s.Jetstream, 2 * mib, 1},
	}
	var floors int64
	for _, x := range scaled {
		floors += x.floor * x.count
	}
	if heap <= floors {
		return s
	}
	for _, x := range scaled {
		// Below MinBudget nothing fits: every share at its floor.
		*x.v = x.floor + (*x.v-x.floor)*max(avail-floors, 0)/(heap-floors)
	}
	return s
}

// ForSplitter is s for `relay splitter`, which copies one upstream relay
// to its consumers: it has no subscribed hosts, identities, account
// overlay, validated results or resyncs, and reads one connection instead
// of thousands, so those shares go to its consumers, a third to the
// firehose's and two thirds to Jetstream's, whose subscribers are bounded
// at about six times a firehose consumer (at 1 GiB: about 1,700 firehose
// consumers instead of 170, and Jetstream subscribers in proportion). The
// heap total is unchanged, so the GC headroom SharesOf left still holds.
// Intake (the queue in front of the store) and HTTP (its public listener)
// keep their shares; the upstream message being read is, like a
// near-limit frame in the relay, outside the shares.
func (s Shares) ForSplitter() Shares {
	freed := s.IdentityCache + s.Hosts + s.Overlay + s.Upstream + s.Results + s.Resync
	s.IdentityCache, s.Hosts, s.Overlay, s.Upstream, s.Results, s.Resync = 0, 0, 0, 0, 0, 0
	s.Consumers += freed / 3
	s.Jetstream += freed - freed/3
	return s
}

// Heap is the sum of the shares on the Go heap, the intake counted twice
// (see [Shares]).
func (s Shares) Heap() int64 {
	return s.Ring + s.IdentityCache + s.Hosts + s.Overlay + s.Upstream + 2*s.Intake + s.Results + s.Resync +
		s.Consumers + s.HTTP + s.Jetstream
}

// OffHeap is the part of s allocated outside the Go heap in this build (see
// [PebbleOffHeap]).
func (s Shares) OffHeap() int64 {
	return PebbleOffHeap(s.BlockCache, s.MemTable, MemTablesInMemory)
}

// Pebble is what Pebble's block cache and memtables take, on or off the Go
// heap.
func (s Shares) Pebble() int64 {
	return s.BlockCache + s.MemTable*MemTablesInMemory
}

func clamp(v, lo, hi int64) int64 {
	return min(max(v, lo), hi)
}
