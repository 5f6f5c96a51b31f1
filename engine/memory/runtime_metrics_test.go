package memory

import (
	"bytes"
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	vm "github.com/VictoriaMetrics/metrics"
)

func TestRuntimeMetricsExposition(t *testing.T) {
	set := vm.NewSet()
	s := Settings{
		Budget: 4 << 30, BudgetSource: SourceConfig, CgroupLimit: 5 << 30, OffHeap: 256 << 20,
		MemoryLimit: 3 << 30, MemoryLimitSource: SourceConfig,
		GOGC: 100, GOGCSource: SourceEnv, GOMAXPROCS: 2, GOMAXPROCSSource: SourceRuntime,
	}
	RegisterRuntimeMetrics(set, s)
	// Burn some GC so the second scrape has a window with GC CPU in it.
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for range 5 {
		runtime.GC()
	}
	buf.Reset()
	set.WritePrometheus(&buf)
	text := buf.String()

	values := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			t.Fatalf("bad value in %q: %v", line, err)
		}
		values[name] = v
	}
	f := func(name string, ok func(v float64) bool) {
		t.Helper()
		v, found := values[name]
		if !found {
			t.Errorf("%s missing from exposition:\n%s", name, text)
			return
		}
		if !ok(v) {
			t.Errorf("%s = %g out of range", name, v)
		}
		family, _, _ := strings.Cut(name, "{")
		if !regexp.MustCompile(`(?m)^# HELP ` + regexp.QuoteMeta(family) + ` \S`).MatchString(text) {
			t.Errorf("%s has no help text", name)
		}
	}
	eq := func(want float64) func(float64) bool { return func(v float64) bool { return v == want } }
	positive := func(v float64) bool { return v > 0 }
	f("relay_memory_budget_bytes", eq(4<<30))
	f("relay_memory_offheap_reserved_bytes", eq(256<<20))
	f("relay_memory_cgroup_limit_bytes", eq(5<<30))
	f("relay_memory_go_bytes", positive)
	f("relay_memory_heap_free_bytes", func(v float64) bool { return v >= 0 })
	f("relay_runtime_gogc_percent", eq(float64(currentGOGC())))
	if cgoEnabled {
		// The Go runtime's own thread starts malloc, so C memory is never zero.
		f("relay_memory_c_held_bytes", positive)
		f("relay_memory_c_inuse_bytes", positive)
		f("relay_memory_c_arenas", eq(cArenas))
	}
	f("relay_runtime_gc_cpu_fraction", func(v float64) bool { return v > 0 && v <= 1 })
	info := fmt.Sprintf(`relay_runtime_settings_info{budget="config",gomemlimit="config",gogc="env",gomaxprocs="runtime",cgo="%t"}`, cgoEnabled)
	f(info, eq(1))
}

// TestProcessMetricsCoverTheRest pins the package doc's claim that
// VictoriaMetrics/metrics already exports the other requested series, so
// this package must not duplicate them.
func TestProcessMetricsCoverTheRest(t *testing.T) {
	var buf bytes.Buffer
	vm.WriteProcessMetrics(&buf)
	for _, name := range []string{
		"process_resident_memory_bytes",
		"go_memstats_heap_inuse_bytes",
		"go_memstats_heap_idle_bytes",
		"go_memstats_heap_released_bytes",
		"go_memstats_stack_inuse_bytes",
		"go_gc_cpu_seconds_total",
		"go_memlimit_bytes",
		"go_gomaxprocs",
		"go_goroutines",
	} {
		if !regexp.MustCompile(`(?m)^` + name + `[ {]`).Match(buf.Bytes()) {
			t.Errorf("WriteProcessMetrics lacks %s", name)
		}
	}
}
