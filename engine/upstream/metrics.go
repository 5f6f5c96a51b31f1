package upstream

import "github.com/VictoriaMetrics/metrics"

// loopMetrics are the loop's series in Config.Metrics. Every error reason
// has its counter from the start, so dashboards show 0 rather than no data.
type loopMetrics struct {
	set    *metrics.Set // static
	names  []string     // static: every series registered, for unregister
	frames *metrics.Counter
	bytes  *metrics.Counter
	dials  *metrics.Counter
	errs   [numReasons]*metrics.Counter

	logSuppressed *metrics.Counter // log lines refused by Host.LogAllowed
	starved       *metrics.Counter // turns ended by the buffer budget
}

func newLoopMetrics(set *metrics.Set, l *Loop) *loopMetrics {
	m := &loopMetrics{set: set}
	counter := func(name string) *metrics.Counter {
		m.names = append(m.names, name)
		return set.NewCounter(name)
	}
	gauge := func(name string, f func() float64) {
		m.names = append(m.names, name)
		set.NewGauge(name, f)
	}
	m.frames = counter("relay_upstream_frames_total")
	m.bytes = counter("relay_upstream_bytes_total")
	m.dials = counter("relay_upstream_dials_total")
	m.logSuppressed = counter("relay_upstream_log_suppressed_total")
	m.starved = counter("relay_upstream_starved_total")
	for r := range numReasons {
		m.errs[r] = counter(`relay_upstream_errors_total{reason="` + r.String() + `"}`)
	}
	gauge("relay_upstream_connections", func() float64 { return float64(l.connected.Load()) })
	gauge("relay_upstream_hosts", func() float64 { return float64(l.Hosts()) })
	gauge("relay_upstream_outstanding_bytes", func() float64 { return float64(l.outstanding.Load()) })
	gauge("relay_upstream_buffered_bytes", func() float64 { return float64(l.mem.inUse()) })
	gauge("relay_upstream_buffer_limit_bytes", func() float64 { return float64(l.cfg.MaxBufferedBytes) })
	gauge("relay_upstream_pending_bytes", func() float64 { return float64(l.pending.Load()) })
	gauge("relay_upstream_starved_hosts", func() float64 { return float64(l.mem.waiting()) })
	return m
}

// unregister removes the loop's series so a new Loop can use the same set.
func (m *loopMetrics) unregister() {
	for _, n := range m.names {
		m.set.UnregisterMetric(n)
	}
}
