package jetstream

import (
	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/engine/clientip"
	"github.com/atrelay/relay/engine/label"
)

// cause is why a subscriber was disconnected: a closed set whose String is
// the reason label of relay_jetstream_disconnects_total.
type cause uint8

const (
	causeNone         cause = iota
	causeClientClosed       // the client sent a close frame or hung up
	causeProtocol           // the client broke the WebSocket protocol
	causeMessageSize        // a client message over MaxClientMessageBytes
	causeBadOptions         // an options_update Jetstream would refuse
	causeHelloTimeout       // requireHello, and no options_update in time
	causeWriteError         // a socket write failed or timed out
	causeTooSlow            // the live queue overflowed
	causeReplayError        // the log failed during a replay
	causeServerClosed       // Server.Close
	numCauses
)

var causeNames = [numCauses]string{
	causeNone:         "none",
	causeClientClosed: "client_closed",
	causeProtocol:     "protocol_error",
	causeMessageSize:  "message_too_big",
	causeBadOptions:   "bad_options",
	causeHelloTimeout: "hello_timeout",
	causeWriteError:   "write_error",
	causeTooSlow:      "too_slow",
	causeReplayError:  "replay_error",
	causeServerClosed: "server_closed",
}

// String returns the cause's metric label.
func (c cause) String() string { return label.Of(causeNames[:], c) }

// serverMetrics are the endpoint's series, registered on Config.Metrics;
// static after New, the counters themselves are atomic.
type serverMetrics struct {
	events      *metrics.Counter // Jetstream events the pump produced
	encoded     *metrics.Counter // JSON encodings (once per wanted event)
	compressed  *metrics.Counter // zstd compressions
	badFrames   *metrics.Counter // log frames that did not decode
	sentLive    *metrics.Counter
	sentReplay  *metrics.Counter
	bytesSent   *metrics.Counter
	pings       *metrics.Counter
	connects    *metrics.Counter
	badRequests *metrics.Counter
	rejected    *metrics.Counter   // refused at MaxSubscribers
	refused     []*metrics.Counter // by clientip.Refusal: per_ip only (global is rejected)
	replays     *metrics.Counter
	optionsUpds *metrics.Counter
	pumpErrors  *metrics.Counter
	skipped     []*metrics.Counter // by skip
	disconnects []*metrics.Counter // by cause
}

func newServerMetrics(set *metrics.Set, s *Server) *serverMetrics {
	m := &serverMetrics{
		events:      set.NewCounter(`relay_jetstream_events_total`),
		encoded:     set.NewCounter(`relay_jetstream_encodes_total{format="json"}`),
		compressed:  set.NewCounter(`relay_jetstream_encodes_total{format="zstd"}`),
		badFrames:   set.NewCounter(`relay_jetstream_bad_frames_total`),
		sentLive:    set.NewCounter(`relay_jetstream_messages_sent_total{mode="live"}`),
		sentReplay:  set.NewCounter(`relay_jetstream_messages_sent_total{mode="replay"}`),
		bytesSent:   set.NewCounter(`relay_jetstream_bytes_sent_total`),
		pings:       set.NewCounter(`relay_jetstream_pings_sent_total`),
		connects:    set.NewCounter(`relay_jetstream_connects_total`),
		badRequests: set.NewCounter(`relay_jetstream_bad_requests_total`),
		rejected:    set.NewCounter(`relay_jetstream_rejected_total`),
		replays:     set.NewCounter(`relay_jetstream_replays_total`),
		optionsUpds: set.NewCounter(`relay_jetstream_options_updates_total`),
		pumpErrors:  set.NewCounter(`relay_jetstream_pump_errors_total`),
	}
	m.skipped = label.Counters(set, `relay_jetstream_ops_skipped_total`, "reason", skipNames[:], skipNoCID)
	m.disconnects = label.Counters(set, `relay_jetstream_disconnects_total`, "reason", causeNames[:], causeClientClosed)
	// The global refusals keep their older series, relay_jetstream_rejected_total.
	m.refused = clientip.RefusalCounters(set, `relay_jetstream_subscribers_rejected_total`, clientip.RefusePerIP)
	set.NewGauge(`relay_jetstream_subscribers`, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.all))
	})
	set.NewGauge(`relay_jetstream_pump_seq`, func() float64 { return float64(s.pumpSeq.Load()) })
	// How far the slowest live subscriber is behind, in bytes of messages
	// made since its oldest one; at Config.BacklogBytes it is cut.
	set.NewGauge(`relay_jetstream_backlog_bytes`, func() float64 { return float64(s.backlog()) })
	return m
}
