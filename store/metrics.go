package store

import (
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cockroachdb/pebble/v2"
)

// Stats is a point-in-time view of the store and of Pebble's health, for
// the metrics layer and the admin API. It is a value owned by the caller.
type Stats struct {
	OldestSeq, NewestSeq Seq
	DiskBytes            uint64 // all live files: sstables, WAL, manifest
	MemTableBytes        uint64 // memtables currently allocated
	BlockCacheBytes      int64  // bytes held by the block cache
	BlockCacheHits       int64
	BlockCacheMisses     int64
	Compactions          int64  // compactions completed since Open
	CompactionDebtBytes  uint64 // estimated bytes still to compact
	L0Files              int64  // L0 sstables: read amplification that stalls writes
	WriteStalls          int64  // write stalls begun since Open
	WriteStallTime       time.Duration
	RetentionDropped     int64 // events dropped by retention since Open
}

// Stats collects the current Stats. It asks Pebble for its metrics, which
// takes a few microseconds and a lock shared with compactions; call it at
// scrape frequency, not per event. Safe for concurrent use.
func (s *Store) Stats() Stats {
	m := s.db.Metrics()
	st := Stats{
		OldestSeq:           s.OldestSeq(),
		NewestSeq:           s.NewestSeq(),
		DiskBytes:           m.DiskSpaceUsage(),
		MemTableBytes:       m.MemTable.Size,
		BlockCacheBytes:     m.BlockCache.Size,
		BlockCacheHits:      m.BlockCache.Hits,
		BlockCacheMisses:    m.BlockCache.Misses,
		Compactions:         m.Compact.Count,
		CompactionDebtBytes: m.Compact.EstimatedDebt,
		L0Files:             m.Levels[0].TablesCount,
		WriteStalls:         s.stalls.Load(),
		WriteStallTime:      time.Duration(s.stallNs.Load()),
		RetentionDropped:    s.retained.Load(),
	}
	if from := s.stallFrom.Load(); from != 0 {
		st.WriteStallTime += time.Since(time.Unix(0, from))
	}
	return st
}

// Pebble exposes the underlying database's full metrics for debugging
// endpoints. Safe for concurrent use.
func (s *Store) Pebble() *pebble.Metrics { return s.db.Metrics() }

// RegisterMetrics adds the store's gauges to set, named relay_store_*.
// Each scrape collects Stats once and shares it among the gauges.
func (s *Store) RegisterMetrics(set *metrics.Set) {
	var mu sync.Mutex
	var last Stats
	var at time.Time
	get := func() Stats {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(at) > time.Second {
			last, at = s.Stats(), time.Now()
		}
		return last
	}
	gauge := func(name string, f func(Stats) float64) {
		set.NewGauge(name, func() float64 { return f(get()) })
	}
	gauge("relay_store_oldest_seq", func(st Stats) float64 { return float64(st.OldestSeq) })
	gauge("relay_store_newest_seq", func(st Stats) float64 { return float64(st.NewestSeq) })
	gauge("relay_store_disk_bytes", func(st Stats) float64 { return float64(st.DiskBytes) })
	gauge("relay_store_memtable_bytes", func(st Stats) float64 { return float64(st.MemTableBytes) })
	gauge("relay_store_block_cache_bytes", func(st Stats) float64 { return float64(st.BlockCacheBytes) })
	gauge("relay_store_block_cache_hits_total", func(st Stats) float64 { return float64(st.BlockCacheHits) })
	gauge("relay_store_block_cache_misses_total", func(st Stats) float64 { return float64(st.BlockCacheMisses) })
	gauge("relay_store_compactions_total", func(st Stats) float64 { return float64(st.Compactions) })
	gauge("relay_store_compaction_debt_bytes", func(st Stats) float64 { return float64(st.CompactionDebtBytes) })
	gauge("relay_store_l0_files", func(st Stats) float64 { return float64(st.L0Files) })
	gauge("relay_store_write_stalls_total", func(st Stats) float64 { return float64(st.WriteStalls) })
	gauge("relay_store_write_stall_seconds_total", func(st Stats) float64 { return st.WriteStallTime.Seconds() })
	gauge("relay_store_retention_dropped_total", func(st Stats) float64 { return float64(st.RetentionDropped) })
}
