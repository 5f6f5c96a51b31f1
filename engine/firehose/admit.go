package firehose

import (
	"net/netip"
	"sync"

	"github.com/atrelay/relay/engine/label"
)

// refusal is why a subscribeRepos request was turned away before the
// upgrade: a closed set whose String is the reason label of
// relay_firehose_refused_total.
type refusal uint8

const (
	refuseNone   refusal = iota
	refuseGlobal         // MaxConsumers connections already (HTTP 503)
	refusePerIP          // MaxConsumersPerIP connections from this client (HTTP 429)
	numRefusals
)

var refusalNames = [numRefusals]string{
	refuseNone:   "none",
	refuseGlobal: "global",
	refusePerIP:  "per_ip",
}

// String returns the refusal's metric label.
func (r refusal) String() string { return label.Of(refusalNames[:], r) }

// admission counts the connection slots held, in total and per client key.
// A slot is taken before the upgrade and given back when the consumer's
// writer ends, so it also covers connections still upgrading. Safe for
// concurrent use.
type admission struct {
	mu    sync.Mutex
	total int                // guarded by mu
	perIP map[netip.Addr]int // guarded by mu; only keys holding a slot, so at most MaxConsumers entries
}

// acquire takes a slot for key unless a cap is reached.
func (a *admission) acquire(key netip.Addr, maxTotal, maxPerIP int) refusal {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.total >= maxTotal {
		return refuseGlobal
	}
	n := a.perIP[key]
	if n >= maxPerIP {
		return refusePerIP
	}
	if a.perIP == nil {
		a.perIP = make(map[netip.Addr]int)
	}
	a.perIP[key] = n + 1
	a.total++
	return refuseNone
}

// release gives back a slot acquire took for key.
func (a *admission) release(key netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if n := a.perIP[key]; n > 1 {
		a.perIP[key] = n - 1
	} else {
		delete(a.perIP, key)
	}
}

// held returns the slots held.
func (a *admission) held() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total
}
