package splitter

import (
	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/engine/label"
)

// reason is why an upstream connection ended: a closed set whose String is
// the reason label of relay_splitter_upstream_disconnects_total.
type reason uint8

const (
	reasonNone              reason = iota
	reasonDial                     // the TCP connect failed
	reasonHandshake                // the WebSocket upgrade failed (non-101, bad headers)
	reasonHandshakeTooLarge        // the upgrade response head broke its bounds
	reasonRead                     // the connection broke or the upstream hung up
	reasonTimeout                  // silence after a ping, a message too slow, a write stuck
	reasonProtocol                 // a malformed or forbidden WebSocket frame
	reasonOversize                 // a message above MaxFrameBytes
	reasonClosed                   // the upstream sent a close frame
	reasonErrorFrame               // the upstream sent an error frame (FutureCursor, ...)
	numReasons
)

var reasonNames = [numReasons]string{
	reasonNone:              "none",
	reasonDial:              "dial",
	reasonHandshake:         "handshake",
	reasonHandshakeTooLarge: "handshake_too_large",
	reasonRead:              "read",
	reasonTimeout:           "timeout",
	reasonProtocol:          "protocol",
	reasonOversize:          "oversize",
	reasonClosed:            "closed",
	reasonErrorFrame:        "error_frame",
}

// String returns the reason's metric label.
func (r reason) String() string { return label.Of(reasonNames[:], r) }

// penalized reports whether a connection ended this way counts as a failed
// attempt even if it delivered frames first, so a misbehaving upstream
// backs off instead of being redialed at once.
func (r reason) penalized() bool {
	switch r {
	case reasonProtocol, reasonOversize, reasonErrorFrame, reasonHandshakeTooLarge:
		return true
	}
	return false
}

// drop is why an upstream frame was not stored: the label of
// relay_splitter_frames_dropped_total.
type drop uint8

const (
	dropMalformed   drop = iota // the header or body scan failed
	dropUnknownType             // an op or t this relay does not log (legacy #handle, ...)
	dropNoSeq                   // an event frame without a seq
	dropSeqNotAbove             // seq not above the newest we have: a replayed or reset upstream
	dropInvalid                 // a seq above store.MaxSeq or a DID above store.MaxDIDBytes
	numDrops
)

var dropNames = [numDrops]string{
	dropMalformed:   "malformed",
	dropUnknownType: "unknown_type",
	dropNoSeq:       "no_seq",
	dropSeqNotAbove: "seq_not_above_newest",
	dropInvalid:     "invalid",
}

// resetSignal is how an upstream showed it is behind our newest seq: the
// signal label of relay_splitter_upstream_resets_total.
type resetSignal uint8

const (
	signalFutureCursor resetSignal = iota // it answered our cursor with FutureCursor
	signalSeqBackwards                    // it sent a seq not above our newest
	numSignals
)

var signalNames = [numSignals]string{
	signalFutureCursor: "future_cursor",
	signalSeqBackwards: "seq_backwards",
}

// cursorWait is how a subscribeRepos request with a future cursor ended its
// wait: the result label of relay_splitter_cursor_waits_total.
type cursorWait uint8

const (
	waitReached cursorWait = iota // the log reached the cursor
	waitTimeout                   // FutureCursorWait passed; the hub answers FutureCursor
	waitBusy                      // MaxCursorWaiters were already waiting
	waitGone                      // the client left or the splitter closed
	numWaits
)

var waitNames = [numWaits]string{
	waitReached: "reached",
	waitTimeout: "timeout",
	waitBusy:    "busy",
	waitGone:    "gone",
}

// proxyResult is how a passed-through XRPC request ended: the result label
// of relay_splitter_proxy_requests_total.
type proxyResult uint8

const (
	proxyOK       proxyResult = iota // the upstream answered (any status)
	proxyFailed                      // the upstream could not be reached or timed out (502)
	proxyBusy                        // ProxyMaxInFlight were running (503)
	proxyTooLarge                    // the request body was above ProxyMaxBodyBytes (413)
	proxyRefused                     // not a passed-through method (404 or 405)
	numProxyResults
)

var proxyNames = [numProxyResults]string{
	proxyOK:       "ok",
	proxyFailed:   "upstream_failed",
	proxyBusy:     "busy",
	proxyTooLarge: "too_large",
	proxyRefused:  "refused",
}

// splitterMetrics are the relay_splitter_* series on Deps.Metrics; static
// after New, the counters themselves are atomic. Every label value exists
// from the start so dashboards show 0, not "no data".
type splitterMetrics struct {
	frames      *metrics.Counter
	bytes       *metrics.Counter
	batches     *metrics.Counter
	dials       *metrics.Counter
	jumps       *metrics.Counter
	outdated    *metrics.Counter
	disconnects []*metrics.Counter // by reason
	dropped     []*metrics.Counter // by drop
	resets      []*metrics.Counter // by resetSignal
	waits       []*metrics.Counter // by cursorWait
	proxy       []*metrics.Counter // by proxyResult
}

func newSplitterMetrics(set *metrics.Set, s *Splitter) *splitterMetrics {
	m := &splitterMetrics{
		frames:   set.NewCounter(`relay_splitter_frames_total`),
		bytes:    set.NewCounter(`relay_splitter_bytes_total`),
		batches:  set.NewCounter(`relay_splitter_batches_total`),
		dials:    set.NewCounter(`relay_splitter_upstream_dials_total`),
		jumps:    set.NewCounter(`relay_splitter_seq_jumps_total`),
		outdated: set.NewCounter(`relay_splitter_upstream_outdated_cursor_total`),
	}
	m.disconnects = label.Counters(set, `relay_splitter_upstream_disconnects_total`, "reason", reasonNames[:], reasonDial)
	m.dropped = label.Counters(set, `relay_splitter_frames_dropped_total`, "reason", dropNames[:], dropMalformed)
	m.resets = label.Counters(set, `relay_splitter_upstream_resets_total`, "signal", signalNames[:], signalFutureCursor)
	m.waits = label.Counters(set, `relay_splitter_cursor_waits_total`, "result", waitNames[:], waitReached)
	m.proxy = label.Counters(set, `relay_splitter_proxy_requests_total`, "result", proxyNames[:], proxyOK)
	set.NewGauge(`relay_splitter_upstream_connected`, func() float64 { return b2f(s.connected.Load()) })
	set.NewGauge(`relay_splitter_upstream_behind`, func() float64 { return b2f(s.behind.Load()) })
	set.NewGauge(`relay_splitter_last_seq`, func() float64 { return float64(s.st.NewestSeq()) })
	set.NewGauge(`relay_splitter_upstream_last_seen_seq`, func() float64 { return float64(s.seen.Load()) })
	set.NewGauge(`relay_splitter_queue_bytes`, func() float64 { return float64(s.q.heldBytes()) })
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
