package relay

import (
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

// hostMetricsLoop re-chooses the top talkers until Close.
func (r *Relay) hostMetricsLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.HostMetricsInterval)
	defer t.Stop()
	for {
		select {
		case <-r.bgCtx.Done():
			return
		case <-t.C:
			r.refreshHostTop()
		}
	}
}

func hostSeriesNames(name string) (frames, bytes string) {
	return fmt.Sprintf(`relay_host_frames_received_total{host=%q}`, name), fmt.Sprintf(`relay_host_bytes_received_total{host=%q}`, name)
}

// refreshHostTop runs one pass of the top-talker choice.
func (r *Relay) refreshHostTop() {
	top := &r.hostTop
	if top.last == nil {
		top.last = make(map[*hostState]int64)
		top.series = make(map[*hostState]bool)
	}
	r.hostsMu.Lock()
	live := make([]*hostState, 0, len(r.hosts))
	for _, hs := range r.hosts {
		live = append(live, hs)
	}
	r.hostsMu.Unlock()
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
	if len(talkers) > r.cfg.HostMetricsTopN {
		talkers = talkers[:r.cfg.HostMetricsTopN]
	}
	want := make(map[*hostState]bool, len(talkers))
	for _, t := range talkers {
		want[t.hs] = true
	}
	for hs := range top.series {
		if !want[hs] {
			f, b := hostSeriesNames(hs.name)
			r.m.set.UnregisterMetric(f)
			r.m.set.UnregisterMetric(b)
			delete(top.series, hs)
		}
	}
	for hs := range want {
		if top.series[hs] {
			continue
		}
		f, b := hostSeriesNames(hs.name)
		r.m.set.GetOrCreateGauge(f, func() float64 { return float64(hs.framesIn.Load()) })
		r.m.set.GetOrCreateGauge(b, func() float64 { return float64(hs.bytesIn.Load()) })
		top.series[hs] = true
	}
}

// upstreamCounts counts subscribed hosts by connection state.
func (r *Relay) upstreamCounts() (connected, paused, disconnected int) {
	r.hostsMu.Lock()
	defer r.hostsMu.Unlock()
	for _, hs := range r.hosts {
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
