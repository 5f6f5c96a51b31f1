package store

import (
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable/block"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/atrelay/relay/internal/config"
)

// SyncPolicy says when an event batch (Staged.Commit, AppendAt) reaches
// stable storage.
type SyncPolicy uint8

const (
	// SyncEveryBatch fsyncs the WAL once per event batch before its
	// commit returns. The zero value, and the default.
	SyncEveryBatch SyncPolicy = 0
	// NoSync writes the WAL without fsync: nothing is lost on a process
	// crash (the data is in the page cache), but a power loss loses the
	// batches since the OS last wrote the file back.
	NoSync SyncPolicy = 1
)

// Options configure a Store. Zero fields take the documented default;
// Validate reports every inconsistent field at once.
type Options struct {
	// FS is the filesystem; nil means the OS filesystem. Tests pass
	// vfs.NewMem() or an errorfs wrapper.
	FS vfs.FS

	// InitialSeq is the first seq of a fresh database (like the reference
	// relay's --initial-seq-number). Default 1. Ignored once the database
	// has assigned a seq.
	InitialSeq Seq

	// Sync is the durability policy of the event batches. Default SyncEveryBatch.
	Sync SyncPolicy

	// SyncInterval is the least time between two WAL fsyncs under
	// SyncEveryBatch: a commit that comes sooner after the last fsync has
	// its batch written at once but waits for the next fsync, which then
	// covers every batch written meanwhile. Zero fsyncs as soon as asked.
	// With one goroutine appending, each commit waits for its own fsync, so
	// a fast disk makes many small fsyncs (4,000 per second of 4–5 events in
	// bench-e2e), each costing kernel time and two context switches; an
	// interval trades at most that much latency for fewer, larger ones.
	SyncInterval time.Duration

	// BlockCacheBytes sizes Pebble's block cache. Default 1 GiB: on a
	// 24 GiB machine it holds the account table's hot part and the
	// replay window's newest minutes, leaving most RAM to the page cache.
	BlockCacheBytes int64

	// MemTableBytes sizes one Pebble memtable. Default 64 MiB: about
	// 20,000 3 KB frames, so flushes happen every few seconds at peak.
	MemTableBytes uint64

	// InlineValues turns off value separation. By default values of 512
	// bytes and more (event frames) go to Pebble blob files when a memtable
	// is flushed, compressed once with zstd, and compactions move references
	// to them instead of rewriting them: BenchmarkSustainedAppendCPU measures
	// 6.9 instead of 17–24 µs of CPU per event, for 9 % more bytes on disk
	// (see pebbleOptions for the compression).
	InlineValues bool
	// ReplayWindow is how long events stay replayable. Default 72h
	// (spec §15, REF default).
	ReplayWindow time.Duration

	// DiskBudgetBytes, if above zero, makes retention drop the oldest
	// events while Pebble's disk usage exceeds it, even inside the window.
	// Zero means the budget is not enforced (the window still is).
	DiskBudgetBytes uint64

	// RetentionInterval is how often the retention goroutine runs.
	// Default 1 minute.
	RetentionInterval time.Duration

	// MaxBatchEvents bounds one Stage or AppendAt call. Default 4096.
	MaxBatchEvents int

	// Now is the clock for commit times, last-seen times and retention.
	// Default time.Now.
	Now func() time.Time

	// Logger receives Pebble's log lines; nil discards them. Pebble's fatal
	// reports (failed WAL writes, for one) reach it through Errorf, and make
	// the store fail every later write with ErrFailed instead of exiting.
	Logger pebble.Logger
}

// Defaults used by withDefaults.
const (
	DefaultBlockCacheBytes   = 1 << 30
	DefaultMemTableBytes     = 64 << 20
	DefaultReplayWindow      = 72 * time.Hour
	DefaultRetentionInterval = time.Minute
	DefaultMaxBatchEvents    = 4096
	// MaxSyncInterval bounds SyncInterval: beyond it the wait would be
	// felt by consumers as a stall rather than as latency.
	MaxSyncInterval = 100 * time.Millisecond
	// DefaultSyncInterval is the SyncInterval relay serve runs with
	// (RELAY_SYNC_INTERVAL); the store's own zero value keeps the plain
	// one-fsync-per-commit behaviour. 1 ms took bench-e2e from 18,100 to
	// 20,000 events/s, as much as no fsync at all (PERF.md).
	DefaultSyncInterval = time.Millisecond
)

// MaxBatchEvents is the most events one Stage or AppendAt accepts: the opened store's
// Options.MaxBatchEvents after defaults. A writer batching for the store
// must stay at or below it.
func (s *Store) MaxBatchEvents() int { return s.opts.MaxBatchEvents }

// MaxBatchBytes is the most bytes of event frames one Stage should carry: a
// quarter of a memtable. A Pebble batch of half a memtable or more is not
// applied to the memtable but becomes a memtable of its own, flushed to an
// L0 file of its size: a group commit that large would rotate the memtable
// at every commit. The frames are most of a batch; keys and account rows
// add about a fifth, which the quarter leaves room for.
func (s *Store) MaxBatchBytes() int { return int(s.opts.MemTableBytes / 4) }

func (o Options) withDefaults() Options {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.InitialSeq == SeqNone {
		o.InitialSeq = 1
	}
	config.Default(&o.BlockCacheBytes, DefaultBlockCacheBytes)
	config.Default(&o.MemTableBytes, DefaultMemTableBytes)
	config.Default(&o.ReplayWindow, DefaultReplayWindow)
	config.Default(&o.RetentionInterval, DefaultRetentionInterval)
	config.Default(&o.MaxBatchEvents, DefaultMaxBatchEvents)
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Validate reports every invalid field of o (after defaults) in one error
// that matches ErrBadOptions.
func (o Options) Validate() error {
	o = o.withDefaults()
	var p config.Problems
	if o.InitialSeq > MaxSeq {
		p.Addf("InitialSeq %d above MaxSeq", o.InitialSeq)
	}
	if o.Sync > NoSync {
		p.Addf("Sync policy %d unknown", o.Sync)
	}
	if o.BlockCacheBytes < 1<<20 {
		p.Addf("BlockCacheBytes %d below 1 MiB", o.BlockCacheBytes)
	}
	if o.MemTableBytes < 1<<20 || o.MemTableBytes >= 4<<30 {
		p.Addf("MemTableBytes %d outside [1 MiB, 4 GiB)", o.MemTableBytes)
	}
	if o.ReplayWindow < time.Minute {
		p.Addf("ReplayWindow %v below 1m", o.ReplayWindow)
	}
	if o.SyncInterval < 0 || o.SyncInterval > MaxSyncInterval {
		p.Addf("SyncInterval %v outside [0, %v]", o.SyncInterval, MaxSyncInterval)
	}
	if o.RetentionInterval < 0 {
		p.Addf("RetentionInterval %v negative", o.RetentionInterval)
	}
	if o.MaxBatchEvents < 1 {
		p.Addf("MaxBatchEvents %d below 1", o.MaxBatchEvents)
	}
	return p.Err(ErrBadOptions)
}

// pebbleOptions builds Pebble's options. Compression: with value separation
// (the default) every level uses Pebble's Fast profile, zstd level 1 for
// values (compressed once, at flush, and never again) and MinLZ for keys:
// 6.9 µs of CPU and 1,004 bytes per event against 11.0 µs and 916 bytes with
// zstd level 3 (BenchmarkSustainedAppendCPU, idle machine); with
// InlineValues, Snappy on
// L0–L2, where data is rewritten soon and CPU matters, and zstd on L3–L6,
// where nearly all bytes of a multi-day window end up.
func (o *Options) pebbleOptions(cache *pebble.Cache, listener *pebble.EventListener) *pebble.Options {
	po := &pebble.Options{
		FS:                          o.FS,
		Cache:                       cache,
		MemTableSize:                o.MemTableBytes,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       24,
		LBaseMaxBytes:               256 << 20,
		MaxOpenFiles:                4096,
		FormatMajorVersion:          pebble.FormatNewest,
		EventListener:               listener,
	}
	if o.Sync == SyncEveryBatch && o.SyncInterval > 0 {
		interval := o.SyncInterval
		po.WALMinSyncInterval = func() time.Duration { return interval }
	}
	// Two cores: one compaction normally, a second when debt builds up.
	po.CompactionConcurrencyRange = func() (int, int) { return 1, 2 }
	for i := range po.Levels {
		po.Levels[i].BlockSize = 32 << 10
		switch {
		case !o.InlineValues:
			po.Levels[i].Compression = func() *block.CompressionProfile { return block.FastCompression }
		case i < 3:
			po.Levels[i].Compression = func() *block.CompressionProfile { return block.SnappyCompression }
		default:
			po.Levels[i].Compression = func() *block.CompressionProfile { return block.ZstdCompression }
		}
	}
	po.TargetFileSizes[0] = 16 << 20
	if !o.InlineValues {
		po.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
			return pebble.ValueSeparationPolicy{Enabled: true, MinimumSize: 512, MaxBlobReferenceDepth: 10,
				RewriteMinimumAge: 10 * time.Minute, TargetGarbageRatio: 0.2}
		}
	}
	return po
}
