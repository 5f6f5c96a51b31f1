package identity

import (
	"strings"
	"unsafe"
)

// maxPrefetchFlights bounds, as a multiple of the method's request limit
// (PLCMaxInFlight, WebMaxInFlight), the resolutions of that method running
// when Prefetch or Refresh may start another: each is a goroutine waiting
// for an HTTP slot, so the bound is on goroutines and memory, not requests.
// Counting per method keeps a backlog of slow did:web resolutions from
// stopping did:plc prefetches.
const maxPrefetchFlights = 8

// Prefetch starts resolving did in the background unless it is cached
// (positively or negatively), already being resolved, malformed, or too many
// resolutions are pending; it never waits. The relay calls it when a frame
// arrives, before the frame queues for a worker: the worker's Lookup then
// joins the flight or hits the cache, so N accounts new to the cache cost
// about N/PLCMaxInFlight round trips to the directory instead of N per worker
// (after a restart with a cold cache that is the difference between minutes
// and hours). did is only read during the call. A cached did:plc does not
// allocate.
func (r *Resolver) Prefetch(did []byte) {
	if len(did) == 0 {
		return
	}
	// The cache keys did:plc by its decoded bytes, so a view of the frame
	// is enough; did:web keys may be stored as given: copy those (rare).
	s := unsafe.String(&did[0], len(did))
	if !strings.HasPrefix(s, plcPrefix) {
		s = string(did)
	}
	ref, err := r.parse(s)
	if err != nil {
		return
	}
	if _, ok, _ := r.cached(&ref, s); ok {
		return
	}
	m := ref.method()
	r.mu.Lock()
	if r.mu.closed || r.mu.flights[s] != nil || r.mu.running[m] >= maxPrefetchFlights*r.maxIn[m] {
		r.mu.Unlock()
		return
	}
	// A flight may have finished and been cached since the check above
	// (finish does both under r.mu).
	if _, ok, _ := r.cached(&ref, s); ok {
		r.mu.Unlock()
		return
	}
	r.startFlightLocked(ref, s, true)
	r.mu.Unlock()
	r.prefetches.Inc()
}
