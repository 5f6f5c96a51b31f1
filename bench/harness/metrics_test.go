package harness

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// The page VictoriaMetrics/metrics writes by default parses, and holds
// every series the sampler reads.
func TestParseProcessMetrics(t *testing.T) {
	var page bytes.Buffer
	metrics.WriteProcessMetrics(&page)
	m, err := ParseMetrics(page.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{metricRSS, metricHeapInuse, metricHeapReleased, metricMallocs, metricGCFraction, metricCPU, metricGoroutines} {
		if v, ok := m.Get(name); !ok || (name == metricRSS && v <= 0) {
			t.Errorf("%s: %v %v", name, v, ok)
		}
	}
}

func TestParseMetricsText(t *testing.T) {
	page := `# HELP relay_x help text
# TYPE relay_x counter
relay_upstream_frames_total{host="a"} 10
relay_upstream_frames_total{host="b b",note="x}\"y"} 5 1700000000000
relay_upstream_frames_totalx 100
relay_store_newest_seq 42

relay_ingest_dropped_total{reason="bad_sig"} 2
relay_reject_total 1
go_dropped_total 9
  gauge_with_spaces   3.5e3  
`
	m, err := ParseMetrics([]byte(page))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := m.Sum("relay_upstream_frames_total"); !ok || v != 15 {
		t.Errorf("sum %v %v", v, ok)
	}
	if _, ok := m.Sum("relay_missing"); ok {
		t.Error("sum of a missing name")
	}
	if v, _ := m.Get("relay_store_newest_seq"); v != 42 {
		t.Errorf("newest %v", v)
	}
	if v, _ := m.Get("gauge_with_spaces"); v != 3500 {
		t.Errorf("spaces %v", v)
	}
	d := m.Drops()
	if len(d) != 2 || d[`relay_ingest_dropped_total{reason="bad_sig"}`] != 2 || d["relay_reject_total"] != 1 {
		t.Errorf("drops %v", d)
	}
	for _, bad := range []string{"name", "name{a=\"b\" 1", "{a=\"b\"} 1", "name notanumber"} {
		if _, err := ParseMetrics([]byte(bad)); !errors.Is(err, ErrMetricsLine) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := ParseMetrics(make([]byte, MaxMetricsBytes+1)); !errors.Is(err, ErrMetricsTooLarge) {
		t.Errorf("large: %v", err)
	}
}

func TestScrapeStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	if _, err := scrape(t.Context(), srv.Client(), srv.URL); !errors.Is(err, ErrMetricsStatus) {
		t.Errorf("status: %v", err)
	}
}

func FuzzParseMetrics(f *testing.F) {
	var page bytes.Buffer
	metrics.WriteProcessMetrics(&page)
	f.Add(page.Bytes())
	f.Add([]byte("a{b=\"c\\\"}\"} 1 2\n# x\nb 3"))
	f.Add([]byte("x{ 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMetrics(b)
		if err != nil {
			return
		}
		for k := range m {
			if k == "" || strings.ContainsAny(k[:1], " {#") {
				t.Fatalf("bad key %q", k)
			}
			m.Sum(k)
		}
		m.Drops()
	})
}

// TestSampleCPUNeedsInterval: a sample taken milliseconds after the last
// one (the final sample of a run) reports no CPU rate instead of one clock
// tick divided by a few milliseconds.
func TestSampleCPUNeedsInterval(t *testing.T) {
	s := &sampler{cfg: Config{SampleInterval: time.Second}.withDefaults(), epoch: time.Now().Add(-time.Minute),
		gate: new(atomic.Int64), source: ingestFromMetrics}
	s.prev = point{at: time.Since(s.epoch) - 5*time.Millisecond, cpu: 1.00}
	if smp := s.take(Metrics{metricCPU: 1.01}); smp.CPUCores != 0 {
		t.Fatalf("5 ms after the last sample: %v cores, want none", smp.CPUCores)
	}
	s.prev = point{at: time.Since(s.epoch) - time.Second, cpu: 1.00}
	if smp := s.take(Metrics{metricCPU: 1.50}); smp.CPUCores < 0.4 || smp.CPUCores > 0.6 {
		t.Fatalf("a second after the last sample: %v cores, want about 0.5", smp.CPUCores)
	}
}
