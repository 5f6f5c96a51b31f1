package identity

import (
	"context"
	"errors"
)

// refresh is a resolution Refresh started for an #identity event that has
// arrived but not been processed. Its flight is in neither flights nor the
// cache: frames of the account queued before the event must still see the
// identity they were sent under, so nothing changes until Reresolve, called
// where the event is processed in order, takes it.
type refresh struct {
	f       *flight
	started uint32 // cache clock (seconds since epoch) when Refresh started it
}

// refreshMaxAge is how long a finished refresh nobody took is kept once the
// table is full: its event was dropped before processing (bad frame,
// throttled host, shutdown).
const refreshMaxAge = 60

// Refresh starts re-resolving did in the background because an #identity
// event for it has just arrived: by the time a worker reaches the event,
// Reresolve finds the fresh document fetched or on its way instead of
// making the worker wait a round trip to the directory. The request starts
// after the event arrived, so it is as fresh as one made when the event is
// processed. A refresh of did still pending is replaced, never reused: it
// was started before this event arrived (for an earlier #identity that was
// dropped, or is still queued and may as well take the fresher one), so it
// may predate the change this event announces. Nothing is started if did
// is malformed, the resolver is closed or maxPrefetchFlights × MaxInFlight
// refreshes are pending; it never waits. did is only read during the call.
func (r *Resolver) Refresh(did []byte) {
	if len(did) == 0 {
		return
	}
	ref, err := parseDID(string(did))
	if err != nil {
		return
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		return
	}
	// The replaced flight, if any, runs on detached and its result is
	// dropped by finish.
	delete(r.mu.refreshes, string(did))
	limit := maxPrefetchFlights * r.cfg.MaxInFlight
	if len(r.mu.refreshes) >= limit {
		for d, old := range r.mu.refreshes {
			if old.f.finished && now-old.started > refreshMaxAge {
				delete(r.mu.refreshes, d)
			}
		}
		if len(r.mu.refreshes) >= limit {
			return
		}
	}
	s := string(did)
	f := &flight{done: make(chan struct{})}
	r.mu.refreshes[s] = refresh{f: f, started: now}
	r.wg.Add(1)
	go r.run(ref, s, f)
	r.refreshed.Inc()
}

// Reresolve purges did and returns its identity resolved anew: the result
// of the refresh Refresh started for it, if one is pending (waiting for it
// if need be), else a fresh request, exactly as Purge then Lookup. Either
// way the result is cached and later Lookups of did see it.
func (r *Resolver) Reresolve(ctx context.Context, did string) (Identity, error) {
	ref, err := parseDID(did)
	if err != nil {
		return Identity{}, err
	}
	r.mu.Lock()
	delete(r.mu.flights, did)
	r.cache.remove(&ref, did)
	rf, ok := r.mu.refreshes[did]
	if !ok || r.mu.closed {
		r.mu.Unlock()
		r.misses.Inc()
		return r.resolve(ctx, &ref, did)
	}
	delete(r.mu.refreshes, did)
	r.refreshUsed.Inc()
	f := rf.f
	if f.finished {
		// finish ran while the flight was detached and stored nothing.
		if !errors.Is(f.err, ErrClosed) {
			r.storeLocked(&ref, did, f)
		}
	} else {
		// Attach it: finish stores its result, and Lookups of did join it.
		r.mu.flights[did] = f
	}
	r.mu.Unlock()
	select {
	case <-f.done:
		if f.err != nil {
			return Identity{}, f.err
		}
		return f.id, nil
	case <-ctx.Done():
		return Identity{}, ctx.Err()
	}
}
