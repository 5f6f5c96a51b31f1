package memory

import (
	"io"
	"testing"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
)

// BenchmarkTrimmerCheck measures one poll that finds nothing to trim, the
// trimmer's steady-state cost.
func BenchmarkTrimmerCheck(b *testing.B) {
	log, _ := testLog()
	tr, err := NewTrimmer(Config{TrimThreshold: 1 << 50}, vm.NewSet(), log)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		tr.check(now)
	}
}

// BenchmarkRuntimeMetricsScrape measures writing this package's gauges once.
func BenchmarkRuntimeMetricsScrape(b *testing.B) {
	set := vm.NewSet()
	RegisterRuntimeMetrics(set, Settings{Budget: 4 << 30})
	b.ReportAllocs()
	for b.Loop() {
		set.WritePrometheus(io.Discard)
	}
}
