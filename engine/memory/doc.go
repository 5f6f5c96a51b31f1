// Package memory sizes the Go runtime to the relay's memory budget and keeps
// resident memory close to the live heap.
//
// It has three parts, all values built and owned by the caller (no package
// state, no goroutines started on import):
//
//   - [Apply] turns a [Config] into runtime settings: GOMEMLIMIT
//     (debug.SetMemoryLimit), GOGC (debug.SetGCPercent) and a report of the
//     GOMAXPROCS the runtime chose. It logs every value and where it came from.
//   - [Trimmer] returns idle heap to the OS with debug.FreeOSMemory when more
//     than a threshold of it is held, at most once per interval.
//   - [RegisterRuntimeMetrics] exports the gauges that VictoriaMetrics/metrics'
//     own process_* and go_* series lack.
//
// # Budget
//
// The budget is the memory the whole process may use (what the unit's
// MemoryHigh is set to). When [Config.Budget] is zero it is taken from the
// cgroup (the smallest memory.high / memory.max on the path from the process's
// cgroup v2 node to the root, or memory.limit_in_bytes under cgroup v1), and
// failing that from MemTotal in /proc/meminfo. An explicit budget above the
// cgroup limit is lowered to the cgroup limit, because the kernel enforces
// that one whatever we set.
//
// # GOMEMLIMIT
//
//	GOMEMLIMIT = Budget − ProcessOverhead(Budget) − OffHeap
//
// GOMEMLIMIT bounds only memory the Go runtime maps (heap, stacks, runtime
// metadata). ProcessOverhead, a tenth of the budget but at least
// MinProcessOverhead (32 MiB), is kept for what it does not see: the
// binary's resident pages (~20 MiB), C allocations and thread stacks from
// cgo (libsecp256k1), and fragmentation of the C allocator. A flat 10 %
// was too little below ~320 MiB: at a 128 MiB budget the binary alone
// took more than the 12.8 MiB left, and RSS peaked at 137 MiB.
//
// The smallest budget accepted is MinBudget (84 MiB), where GOMEMLIMIT is
// MinMemoryLimit (32 MiB) and the shares are at their floors. Small
// budgets cost CPU: the live heap (tables, the ring, the identity cache)
// is then a large part of GOMEMLIMIT, so the collector runs every few MiB
// allocated (PERF.md, Production scale, measures it).
//
// # Shares and the ledger
//
// [SharesOf] splits the budget between the components (the table is on
// [Shares]); the relay hands each share to the component that enforces it.
// A [Ledger] lists the bounds the components were actually configured
// with, plus the process overhead, the fixed Go memory and the GC headroom
// they need; the relay logs it at start-up (a warning when explicit sizes
// push it over the budget), and the tests check it for every budget.
//
// OffHeap is memory that is certain to be allocated outside the Go heap and
// must be carved out explicitly: Pebble v2.1.7 allocates its block cache and
// its memtable arenas through internal/manual, which under cgo
// (manual_cgo.go) calls C.calloc/C.free, so that memory is invisible to the
// Go runtime and to GOMEMLIMIT; without cgo (manual_nocgo.go) it is a plain
// make([]byte, n) and already counted. [PebbleOffHeap] returns the right figure
// for the current build. Page cache used by Pebble's file reads is charged to
// the cgroup but reclaimable under MemoryHigh, so it is not budgeted here.
//
// # GOGC
//
// [Config.GOGC] (default 25, see DefaultGOGC for why not Go's 100) is
// applied as is; -1 turns proportional GC off so that only GOMEMLIMIT
// triggers collections.
//
// # GOMAXPROCS
//
// Since Go 1.25 the runtime derives GOMAXPROCS from the CPU count, the
// affinity mask and the cgroup CPU quota (cgroup v1 cpu.cfs_quota_us or v2
// cpu.max), and keeps updating it when they change, unless the GOMAXPROCS
// environment variable is set or runtime.GOMAXPROCS is called (see the
// runtime package's GOMAXPROCS documentation; go.mod's go 1.26 directive
// selects containermaxprocs=1 and updatemaxprocs=1). Apply therefore never
// calls runtime.GOMAXPROCS: doing so would switch the automatic updates off.
// It only reports the value and whether it came from the environment.
//
// # Operator overrides
//
// When the GOGC, GOMEMLIMIT or GOMAXPROCS environment variables are set, the
// runtime has already applied them at start-up; Apply leaves those settings
// alone, logs that the environment won, and reports the runtime's value.
//
// # Metrics
//
// VictoriaMetrics/metrics' WritePrometheus(w, true) already writes RSS
// (process_resident_memory_bytes, _anon_, _file_, _peak_), heap in use, idle
// and released (go_memstats_heap_*_bytes), stacks (go_memstats_stack_inuse_bytes),
// cumulative GC CPU (go_gc_cpu_seconds_total), GOMEMLIMIT (go_memlimit_bytes),
// GOMAXPROCS and goroutines (go_gomaxprocs, go_goroutines). This package adds,
// with help text:
//
//	relay_memory_budget_bytes               budget Apply settled on
//	relay_memory_offheap_reserved_bytes     part of it reserved for off-heap memory
//	relay_memory_cgroup_limit_bytes         cgroup limit found (0: none)
//	relay_memory_go_bytes                   Go memory counted against GOMEMLIMIT
//	relay_memory_heap_free_bytes            idle heap not yet returned to the OS
//	relay_memory_c_held_bytes               C allocator's memory from the OS (cgo builds)
//	relay_memory_c_inuse_bytes              the part of it allocated
//	relay_memory_c_arenas                   its arenas (one: set at load)
//	relay_runtime_gogc_percent              GOGC in force (-1: off)
//	relay_runtime_gc_cpu_fraction           GC share of available CPU since the previous scrape
//	relay_runtime_settings_info{...}        where each setting came from
//	relay_memory_trim_*                     the trimmer's checks, runs, time and bytes returned
package memory
