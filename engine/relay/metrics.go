package relay

import (
	"fmt"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/atrelay/relay/engine/atproto/event"
)

// DropReason is why the relay did not pass an upstream frame on. The set is
// closed: every value has a label (String) and a counter created at zero.
// Validation failures are counted under their verify reason instead
// (relay_events_rejected_total), so dashboards can tell policy drops from
// bad input.
type DropReason uint8

// Drop reasons.
const (
	DropMalformed        DropReason = iota // Peek or the full decode failed
	DropUnknownKind                        // unknown op or message type (skipped per §9.2)
	DropOutOfOrder                         // upstream seq not above the previous one (§9.3)
	DropInfo                               // upstream #info (logged, never forwarded)
	DropErrorFrame                         // upstream error frame (op -1)
	DropBadDID                             // repo/did does not parse
	DropNotAuthoritative                   // #account/#identity handle from a host that is not the account's PDS
	DropIdentity                           // the DID could not be resolved
	DropInactive                           // account not active (local or upstream)
	DropHostThrottled                      // account beyond its host's account limit
	DropStale                              // the store refused a rev not above the stored one
	DropShutdown                           // the pipeline stopped (store failure or close) before the frame was handled
	DropPanic                              // handling the frame panicked (relay_frame_panics_total); its host is quarantined
	DropQuarantined                        // the frame's host is quarantined: dropped unprocessed, replayed once resumed
	numDropReasons
)

var dropLabels = [numDropReasons]string{
	"malformed", "unknown_kind", "out_of_order", "info", "error_frame", "bad_did",
	"not_authoritative", "identity_unavailable", "inactive", "host_throttled", "stale", "shutdown",
	"panic", "quarantined",
}

// String returns the reason's metric label.
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropLabels[r]
	}
	return "unknown"
}

// acceptedKinds are the kinds the relay logs and forwards.
var acceptedKinds = [...]event.Kind{event.KindCommit, event.KindSync, event.KindIdentity, event.KindAccount}

// metricsSet holds the relay's own series. The fields are static after
// newMetrics; the values are atomic (VictoriaMetrics types).
type metricsSet struct {
	set *metrics.Set

	framesIn, bytesIn *metrics.Counter
	accepted          [event.KindError + 1]*metrics.Counter
	dropped           [numDropReasons]*metrics.Counter
	rejected          map[string]*metrics.Counter // verify reason label → counter; read-only after newMetrics
	chainBreaks       map[string]*metrics.Counter // break kind label → counter; read-only after newMetrics
	cursorResets      [2]*metrics.Counter         // future_cursor, seq_backwards
	desyncMarked      *metrics.Counter
	resyncEnqueued    *metrics.Counter
	validation        *metrics.Histogram
	pipeline          *metrics.Histogram // arrival at the Sink → published, per logged event
	pipelineCached    *metrics.Histogram // the same, for events that did not wait for their DID document
	batchEvents       *metrics.Histogram
	commitSeconds     *metrics.Histogram
	storeFailures     *metrics.Counter
	hostPauses        [3]*metrics.Counter // pool_full, rate_limit, held
	resyncRefused     *metrics.Counter
	resyncGaveUp      *metrics.Counter
	reactivated       *metrics.Counter
	desyncSeconds     *metrics.Histogram
	hostThrottled     *metrics.Counter
	unthrottled       *metrics.Counter
	framePanics       [numStages]*metrics.Counter // by stage (faults.go)
	parked            *metrics.Counter            // frames parked for an identity resolution (park.go)
	parkFull          *metrics.Counter            // frames processed waiting: the side queue was full
	parkRetries       *metrics.Counter            // resolutions retried after a transient failure (park.go)
	parkExpired       *metrics.Counter            // accounts whose frames' retry window ran out
	passed            *metrics.Counter            // results released ahead of a parked earlier frame of their host (OrderAccount)
	// hostCapacityRefusals counts hosts not subscribed because MaxHosts
	// were (hosts.go).
	hostCapacityRefusals *metrics.Counter
}

const (
	resetFutureCursor = 0
	resetSeqBackwards = 1
	pausePoolFull     = 0
	pauseRateLimit    = 1
	pauseHeld         = 2
)

func newMetrics(set *metrics.Set, rejectReasons, breakKinds []string) *metricsSet {
	m := &metricsSet{
		set:            set,
		framesIn:       set.NewCounter("relay_frames_received_total"),
		bytesIn:        set.NewCounter("relay_bytes_received_total"),
		rejected:       make(map[string]*metrics.Counter, len(rejectReasons)),
		chainBreaks:    make(map[string]*metrics.Counter, len(breakKinds)),
		desyncMarked:   set.NewCounter("relay_accounts_desynchronized_total"),
		resyncEnqueued: set.NewCounter("relay_resyncs_enqueued_total"),
		validation:     set.NewHistogram("relay_validation_seconds"),
		pipeline:       set.NewHistogram("relay_pipeline_seconds"),
		pipelineCached: set.NewHistogram("relay_pipeline_identity_cached_seconds"),
		batchEvents:    set.NewHistogram("relay_sequencer_batch_events"),
		commitSeconds:  set.NewHistogram("relay_sequencer_commit_seconds"),
		storeFailures:  set.NewCounter("relay_store_failures_total"),
		resyncRefused:  set.NewCounter("relay_resyncs_refused_total"),
		resyncGaveUp:   set.NewCounter("relay_resyncs_given_up_total"),
		reactivated:    set.NewCounter("relay_accounts_resynchronized_total"),
		desyncSeconds:  set.NewHistogram("relay_account_desynchronized_seconds"),
		hostThrottled:  set.NewCounter("relay_accounts_host_throttled_total"),
		unthrottled:    set.NewCounter("relay_accounts_unthrottled_total"),
		parked:         set.NewCounter("relay_identity_parks_total"),
		parkFull:       set.NewCounter("relay_identity_park_full_total"),
		parkRetries:    set.NewCounter("relay_identity_park_retries_total"),
		parkExpired:    set.NewCounter("relay_identity_park_expired_total"),
		passed:         set.NewCounter("relay_events_passed_parked_total"),

		hostCapacityRefusals: set.NewCounter("relay_host_capacity_refusals_total"),
	}
	for _, k := range acceptedKinds {
		m.accepted[k] = set.NewCounter(fmt.Sprintf(`relay_events_accepted_total{kind=%q}`, k.String()))
	}
	for r := DropReason(0); r < numDropReasons; r++ {
		m.dropped[r] = set.NewCounter(fmt.Sprintf(`relay_events_dropped_total{reason=%q}`, r.String()))
	}
	for _, r := range rejectReasons {
		if _, ok := m.rejected[r]; !ok {
			m.rejected[r] = set.NewCounter(fmt.Sprintf(`relay_events_rejected_total{reason=%q}`, r))
		}
	}
	for _, k := range breakKinds {
		if _, ok := m.chainBreaks[k]; !ok {
			m.chainBreaks[k] = set.NewCounter(fmt.Sprintf(`relay_chain_breaks_total{kind=%q}`, k))
		}
	}
	m.cursorResets[resetFutureCursor] = set.NewCounter(`relay_host_cursor_resets_total{reason="future_cursor"}`)
	m.cursorResets[resetSeqBackwards] = set.NewCounter(`relay_host_cursor_resets_total{reason="seq_backwards"}`)
	m.hostPauses[pausePoolFull] = set.NewCounter(`relay_host_pauses_total{reason="pool_full"}`)
	m.hostPauses[pauseRateLimit] = set.NewCounter(`relay_host_pauses_total{reason="rate_limit"}`)
	m.hostPauses[pauseHeld] = set.NewCounter(`relay_host_pauses_total{reason="held"}`)
	for st := range m.framePanics {
		m.framePanics[st] = set.NewCounter(fmt.Sprintf(`relay_frame_panics_total{stage=%q}`, stageLabels[st]))
	}
	return m
}

func (m *metricsSet) reject(label string) {
	if c := m.rejected[label]; c != nil {
		c.Inc()
	}
}

func (m *metricsSet) chainBreak(label string) {
	if c := m.chainBreaks[label]; c != nil {
		c.Inc()
	}
}

// gauge registers a float gauge computed on scrape.
func gauge(set *metrics.Set, name string, f func() float64) { set.NewGauge(name, f) }

// atomicMax raises v to x if x is larger.
func atomicMax(v *atomic.Int64, x int64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}
