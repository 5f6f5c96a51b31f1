package firehose

import (
	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/engine/clientip"
	"github.com/atrelay/relay/engine/label"
)

// cause is why a consumer was disconnected: a closed set whose String is the
// reason label of relay_firehose_disconnects_total.
type cause uint8

const (
	causeNone         cause = iota
	causeClientClosed       // the client sent a close frame or hung up
	causeProtocol           // the client sent a malformed WebSocket frame
	causeWriteError         // a socket write failed or timed out
	causeTooSlow            // position fell out of the Log window (ConsumerTooSlow)
	causeFutureCursor       // cursor beyond the newest event (FutureCursor)
	causeReplayError        // the Log failed during replay
	causeHubClosed          // Hub.Close
	numCauses
)

var causeNames = [numCauses]string{
	causeNone:         "none",
	causeClientClosed: "client_closed",
	causeProtocol:     "protocol_error",
	causeWriteError:   "write_error",
	causeTooSlow:      "too_slow",
	causeFutureCursor: "future_cursor",
	causeReplayError:  "replay_error",
	causeHubClosed:    "hub_closed",
}

// String returns the cause's metric label.
func (c cause) String() string { return label.Of(causeNames[:], c) }

// hubMetrics are the hub's counters, registered on Config.Metrics; static
// after NewHub, the counters themselves are atomic.
type hubMetrics struct {
	framesLive   *metrics.Counter
	framesReplay *metrics.Counter
	framesCtrl   *metrics.Counter
	bytesSent    *metrics.Counter
	pings        *metrics.Counter
	connects     *metrics.Counter
	badRequests  *metrics.Counter
	replayPasses *metrics.Counter
	disconnects  []*metrics.Counter // by cause
	refused      []*metrics.Counter // by clientip.Refusal
}

// newHubMetrics registers the hub's metrics on set; the gauges call back
// into h. Every disconnect reason is created up front so dashboards show 0.
func newHubMetrics(set *metrics.Set, h *Hub) *hubMetrics {
	m := &hubMetrics{
		framesLive:   set.NewCounter(`relay_firehose_frames_sent_total{mode="live"}`),
		framesReplay: set.NewCounter(`relay_firehose_frames_sent_total{mode="replay"}`),
		framesCtrl:   set.NewCounter(`relay_firehose_frames_sent_total{mode="control"}`),
		bytesSent:    set.NewCounter(`relay_firehose_bytes_sent_total`),
		pings:        set.NewCounter(`relay_firehose_pings_sent_total`),
		connects:     set.NewCounter(`relay_firehose_connects_total`),
		badRequests:  set.NewCounter(`relay_firehose_bad_requests_total`),
		replayPasses: set.NewCounter(`relay_firehose_replay_passes_total`),
	}
	m.disconnects = label.Counters(set, `relay_firehose_disconnects_total`, "reason", causeNames[:], causeClientClosed)
	m.refused = clientip.RefusalCounters(set, `relay_firehose_refused_total`, clientip.RefuseGlobal)
	set.NewGauge(`relay_firehose_consumers`, func() float64 {
		h.mu.Lock()
		defer h.mu.Unlock()
		return float64(len(h.consumers))
	})
	set.NewGauge(`relay_firehose_consumer_lag_max_events`, func() float64 {
		return float64(h.maxLag())
	})
	set.NewGauge(`relay_firehose_ring_frames`, func() float64 {
		h.mu.Lock()
		defer h.mu.Unlock()
		return float64(h.end - h.first)
	})
	set.NewGauge(`relay_firehose_ring_bytes`, func() float64 {
		h.mu.Lock()
		defer h.mu.Unlock()
		return float64(h.bytes)
	})
	set.NewGauge(`relay_firehose_newest_seq`, func() float64 {
		return float64(h.newest.Load())
	})
	return m
}
