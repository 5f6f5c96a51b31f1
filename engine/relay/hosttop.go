package relay

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// hostTop keeps per-host series for the top talkers only: every
// HostMetricsInterval the HostMetricsTopN hosts that received the most
// bytes since the previous pass get (or keep) the gauges
// relay_host_frames_received_total{host} and
// relay_host_bytes_received_total{host}
// (running totals since the relay started; rate() them), and hosts that
// left the top lose theirs. Cardinality stays at most 2 × HostMetricsTopN
// whatever the number of hosts. Owned by the host-metrics goroutine.
type hostTop struct {
	last   map[*hostState]int64 // bytesIn at the previous pass
	series map[*hostState]bool  // hosts that have series now
}

// metricsLoop re-chooses the top talkers until ctx ends (Close). It is
// the host-metrics goroutine, started by New; it alone touches ht.top.
func (ht *hostTable) metricsLoop(ctx context.Context) {
	t := time.NewTicker(ht.cfg.HostMetricsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ht.refreshTop()
		}
	}
}

func hostSeriesNames(name string) (frames, bytes string) {
	return fmt.Sprintf(`relay_host_frames_received_total{host=%q}`, name), fmt.Sprintf(`relay_host_bytes_received_total{host=%q}`, name)
}

// refreshTop runs one pass of the top-talker choice.
func (ht *hostTable) refreshTop() {
	top := &ht.top
	if top.last == nil {
		top.last = make(map[*hostState]int64)
		top.series = make(map[*hostState]bool)
	}
	ht.mu.Lock()
	live := make([]*hostState, 0, len(ht.byName))
	for _, hs := range ht.byName {
		live = append(live, hs)
	}
	ht.mu.Unlock()
	type talker struct {
		hs    *hostState
		delta int64
	}
	talkers := make([]talker, 0, len(live))
	seen := make(map[*hostState]bool, len(live))
	for _, hs := range live {
		b := hs.bytesIn.Load()
		if d := b - top.last[hs]; d > 0 {
			talkers = append(talkers, talker{hs, d})
		}
		top.last[hs] = b
		seen[hs] = true
	}
	for hs := range top.last {
		if !seen[hs] {
			delete(top.last, hs)
		}
	}
	sort.Slice(talkers, func(i, j int) bool { return talkers[i].delta > talkers[j].delta })
	if len(talkers) > ht.cfg.HostMetricsTopN {
		talkers = talkers[:ht.cfg.HostMetricsTopN]
	}
	want := make(map[*hostState]bool, len(talkers))
	for _, t := range talkers {
		want[t.hs] = true
	}
	for hs := range top.series {
		if !want[hs] {
			f, b := hostSeriesNames(hs.name)
			ht.m.set.UnregisterMetric(f)
			ht.m.set.UnregisterMetric(b)
			delete(top.series, hs)
		}
	}
	for hs := range want {
		if top.series[hs] {
			continue
		}
		f, b := hostSeriesNames(hs.name)
		ht.m.set.GetOrCreateGauge(f, func() float64 { return float64(hs.framesIn.Load()) })
		ht.m.set.GetOrCreateGauge(b, func() float64 { return float64(hs.bytesIn.Load()) })
		top.series[hs] = true
	}
}

// upstreamCounts counts subscribed hosts by connection state.
func (ht *hostTable) upstreamCounts() (connected, paused, disconnected int) {
	ht.mu.Lock()
	defer ht.mu.Unlock()
	for _, hs := range ht.byName {
		up := hs.up.Load()
		switch {
		case up == nil || !up.Connected():
			disconnected++
		case up.Paused():
			paused++
		default:
			connected++
		}
	}
	return
}
