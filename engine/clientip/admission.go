package clientip

import (
	"net/netip"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/engine/label"
)

// Refusal is why Admission.Acquire turned a connection away: a closed set
// whose String is the reason label of the endpoints' refusal counters
// (relay_firehose_refused_total,
// relay_jetstream_subscribers_rejected_total).
type Refusal uint8

const (
	RefuseNone   Refusal = iota // admitted
	RefuseGlobal                // the total cap is reached (the endpoints answer HTTP 503)
	RefusePerIP                 // this client's cap is reached (HTTP 429)
	NumRefusals
)

var refusalNames = [NumRefusals]string{
	RefuseNone:   "none",
	RefuseGlobal: "global",
	RefusePerIP:  "per_ip",
}

// RefusedRetryAfter is the Retry-After, in seconds, the endpoints send
// with a refusal (either cap): a slot is not expected to free sooner.
const RefusedRetryAfter = "30"

// String returns the refusal's metric label.
func (r Refusal) String() string { return label.Of(refusalNames[:], r) }

// RefusalCounters registers family{reason="<refusal>"} on set for every
// refusal from first on and returns them indexed by refusal, as
// label.Counters does.
func RefusalCounters(set *metrics.Set, family string, first Refusal) []*metrics.Counter {
	return label.Counters(set, family, "reason", refusalNames[:], first)
}

// Admission counts the connection slots of a streaming endpoint, in total
// and per client key (Key), so that one client cannot take every slot. A
// slot is taken before the WebSocket upgrade and given back when the
// connection's writer ends, so it also covers connections still upgrading.
// The zero Admission holds no slot. Safe for concurrent use.
type Admission struct {
	mu    sync.Mutex
	total int                // guarded by mu
	perIP map[netip.Addr]int // guarded by mu; only keys holding a slot, so at most maxTotal entries
}

// Acquire takes a slot for key unless maxTotal slots are held, or maxPerIP
// by key; it returns RefuseNone when it took one, which Release must give
// back.
func (a *Admission) Acquire(key netip.Addr, maxTotal, maxPerIP int) Refusal {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.total >= maxTotal {
		return RefuseGlobal
	}
	n := a.perIP[key]
	if n >= maxPerIP {
		return RefusePerIP
	}
	if a.perIP == nil {
		a.perIP = make(map[netip.Addr]int)
	}
	a.perIP[key] = n + 1
	a.total++
	return RefuseNone
}

// Release gives back a slot Acquire took for key.
func (a *Admission) Release(key netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if n := a.perIP[key]; n > 1 {
		a.perIP[key] = n - 1
	} else {
		delete(a.perIP, key)
	}
}

// Held returns the slots held.
func (a *Admission) Held() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total
}
