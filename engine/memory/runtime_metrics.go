package memory

import (
	"fmt"
	"io"
	"runtime/metrics"
	"sync"

	vm "github.com/VictoriaMetrics/metrics"
)

// Indexes into runtimeGauges.samples.
const (
	rtTotal = iota
	rtReleased
	rtHeapFree
	rtGOGC
	rtGCCPU
	rtTotalCPU
	numRuntimeSamples
)

// runtimeGauges computes the relay_memory_* / relay_runtime_* series at
// scrape time from one runtime/metrics read (no stop-the-world, unlike
// runtime.ReadMemStats). Safe for concurrent use: scrapes serialise on mu.
type runtimeGauges struct {
	// Static after RegisterRuntimeMetrics.
	settings Settings

	// Guarded by mu.
	mu           sync.Mutex
	samples      [numRuntimeSamples]metrics.Sample
	prevGCCPU    float64 // cpu-seconds at the previous scrape
	prevTotalCPU float64
}

// RegisterRuntimeMetrics registers on set the memory and runtime gauges that
// VictoriaMetrics/metrics' process_* and go_* series lack (listed in the
// package doc), describing the Settings returned by Apply. Register once per
// set.
func RegisterRuntimeMetrics(set *vm.Set, s Settings) {
	g := &runtimeGauges{settings: s}
	names := [numRuntimeSamples]string{
		rtTotal:    "/memory/classes/total:bytes",
		rtReleased: "/memory/classes/heap/released:bytes",
		rtHeapFree: "/memory/classes/heap/free:bytes",
		rtGOGC:     "/gc/gogc:percent",
		rtGCCPU:    "/cpu/classes/gc/total:cpu-seconds",
		rtTotalCPU: "/cpu/classes/total:cpu-seconds",
	}
	for i, n := range names {
		g.samples[i].Name = n
	}
	set.RegisterMetricsWriter(g.write)
}

// write emits the gauges; called by the metrics set on every scrape.
func (g *runtimeGauges) write(w io.Writer) {
	g.mu.Lock()
	metrics.Read(g.samples[:])
	goBytes := sampleUint64(g.samples[rtTotal]) - min(sampleUint64(g.samples[rtReleased]), sampleUint64(g.samples[rtTotal]))
	heapFree := sampleUint64(g.samples[rtHeapFree])
	gogc := float64(currentGOGCFrom(g.samples[rtGOGC]))
	gcCPU, totalCPU := sampleFloat64(g.samples[rtGCCPU]), sampleFloat64(g.samples[rtTotalCPU])
	var fraction float64
	if d := totalCPU - g.prevTotalCPU; d > 0 {
		fraction = (gcCPU - g.prevGCCPU) / d
	}
	g.prevGCCPU, g.prevTotalCPU = gcCPU, totalCPU
	g.mu.Unlock()

	s := g.settings
	writeMetric(w, "relay_memory_budget_bytes", "gauge",
		"Memory budget of the whole process (RELAY_MEMORY_BUDGET, else cgroup limit, else MemTotal).", float64(s.Budget))
	writeMetric(w, "relay_memory_offheap_reserved_bytes", "gauge",
		"Part of the budget reserved for memory outside the Go heap (Pebble cache and memtables under cgo).", float64(s.OffHeap))
	writeMetric(w, "relay_memory_cgroup_limit_bytes", "gauge",
		"Smallest cgroup memory limit on the process's cgroup path, 0 if none.", float64(s.CgroupLimit))
	writeMetric(w, "relay_memory_go_bytes", "gauge",
		"Go runtime memory counted against GOMEMLIMIT (all mapped memory minus released heap).", float64(goBytes))
	writeMetric(w, "relay_memory_heap_free_bytes", "gauge",
		"Idle heap the runtime holds but has not returned to the OS (HeapIdle - HeapReleased).", float64(heapFree))
	writeMetric(w, "relay_runtime_gogc_percent", "gauge",
		"GOGC in force, -1 when proportional GC is off.", gogc)
	writeMetric(w, "relay_runtime_gc_cpu_fraction", "gauge",
		"Share of available CPU (GOMAXPROCS x wall time) spent in GC since the previous scrape.", fraction)
	if cgoEnabled {
		c := ReadCAllocStats()
		writeMetric(w, "relay_memory_c_held_bytes", "gauge",
			"Memory the C allocator has from the OS (Pebble's cache and memtables under cgo): arenas plus mmapped chunks.", float64(c.HeldBytes))
		writeMetric(w, "relay_memory_c_inuse_bytes", "gauge",
			"Part of relay_memory_c_held_bytes allocated; the rest is free chunks kept for reuse.", float64(c.InUseBytes))
		writeMetric(w, "relay_memory_c_arenas", "gauge",
			"Arenas of the C allocator (limited to 1 at load).", float64(c.Arenas))
	}
	fmt.Fprintf(w, "# HELP relay_runtime_settings_info Where each runtime memory setting came from.\n"+
		"# TYPE relay_runtime_settings_info gauge\n"+
		"relay_runtime_settings_info{budget=%q,gomemlimit=%q,gogc=%q,gomaxprocs=%q,cgo=\"%t\"} 1\n",
		s.BudgetSource, s.MemoryLimitSource, s.GOGCSource, s.GOMAXPROCSSource, cgoEnabled)
}

// currentGOGCFrom converts a /gc/gogc:percent sample; -1 means off.
func currentGOGCFrom(s metrics.Sample) int64 {
	v := sampleUint64(s)
	if v > 1<<31 {
		return -1
	}
	return int64(v)
}

// sampleFloat64 returns a runtime/metrics float sample, 0 if unknown.
func sampleFloat64(s metrics.Sample) float64 {
	if s.Value.Kind() != metrics.KindFloat64 {
		return 0
	}
	return s.Value.Float64()
}
