package identity

import (
	"context"
	"errors"
)

// refreshKey names one #identity event: its DID and the caller's tag.
type refreshKey struct {
	did string
	tag uint64
}

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

// maxRefreshes bounds the refreshes held, running or finished and waiting
// for their event to be processed. Frames can queue far ahead of the
// workers (a restarted relay catching up, a replay at full speed), and a
// finished refresh is only its result (about 250 bytes), so the table
// looks much further ahead than the maxPrefetchFlights × PLCMaxInFlight
// (or WebMaxInFlight) running ones it allows: 16,384 is 4 MiB at most.
const maxRefreshes = 16384

// Refresh starts re-resolving did in the background because an #identity
// event for it has just arrived: by the time a worker reaches the event,
// Reresolve(did, tag) finds the fresh document fetched or on its way
// instead of making the worker wait a round trip to the directory. The
// request starts after the event arrived, so it is as fresh as one made
// when the event is processed.
//
// tag tells the account's #identity events apart (the relay passes the
// host and its seq): each event takes only its own refresh, so one that is
// dropped before processing never hands its older document to a later
// event, and several queued events of one account each find theirs. A
// refresh pending under the same did and tag is replaced: whoever takes it
// then gets a fresher document, never an older one, whatever the tag.
//
// Events share a refresh whose request has not been sent yet (it waits for
// a PLC token or its turn in the pace): its document will be fetched after
// every one of them arrived, which is all each needs. A burst of #identity
// events for one DID (a backlog after a restart, a replay) then costs one
// request, not one each.
//
// Nothing is started if did is malformed, the resolver is closed,
// maxPrefetchFlights × the method's request limit refreshes of its method
// are running or maxRefreshes are held; it never waits. did is only read
// during the call.
func (r *Resolver) Refresh(did []byte, tag uint64) {
	if len(did) == 0 {
		return
	}
	s := string(did) // the flight and the table keep it: a copy of the frame's bytes
	ref, err := r.parse(s)
	if err != nil {
		return
	}
	key := refreshKey{s, tag}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		return
	}
	// The replaced flight, if any, runs on detached and its result is
	// dropped by finish.
	delete(r.mu.refreshes, key)
	if f := r.mu.unsent[s]; f != nil && len(r.mu.refreshes) < r.maxRefreshes {
		r.mu.refreshes[key] = refresh{f: f, started: now}
		r.refreshShared.Inc()
		return
	}
	if m := ref.method(); r.mu.refreshRunning[m] >= maxPrefetchFlights*r.maxIn[m] {
		return
	}
	if len(r.mu.refreshes) >= r.maxRefreshes {
		// Sweep at most once a second: a full table of young refreshes
		// (a flood of #identity events) must not cost a scan per frame.
		if now == r.mu.lastSweep {
			return
		}
		r.mu.lastSweep = now
		for k, old := range r.mu.refreshes {
			if old.f.finished && now-old.started > refreshMaxAge {
				delete(r.mu.refreshes, k)
			}
		}
		if len(r.mu.refreshes) >= r.maxRefreshes {
			return
		}
	}
	f := &flight{done: make(chan struct{}), refresh: true}
	r.mu.refreshes[key] = refresh{f: f, started: now}
	r.mu.unsent[s] = f
	r.goLocked(ref, s, f)
	r.refreshed.Inc()
}

// Reresolve purges did and returns its identity resolved anew for the
// #identity event tagged tag: the result of the refresh Refresh started
// for that event, if one is held (waiting for it if need be), else a fresh
// request, exactly as Purge then Lookup. Either way the result is cached
// and later Lookups of did see it.
func (r *Resolver) Reresolve(ctx context.Context, did string, tag uint64) (Identity, error) {
	ref, err := r.parse(did)
	if err != nil {
		return Identity{}, err
	}
	r.forget(&ref, did)
	r.mu.Lock()
	// Purged again with taking the refresh, in one critical section: a
	// resolution that finished since forget must not outlive the event.
	r.purgeLocked(&ref, did)
	key := refreshKey{did, tag}
	rf, ok := r.mu.refreshes[key]
	if !ok || r.mu.closed {
		r.mu.Unlock()
		r.misses.Inc()
		return r.resolve(ctx, &ref, did, false, false)
	}
	delete(r.mu.refreshes, key)
	r.refreshUsed.Inc()
	f := rf.f
	if f.finished {
		// finish ran while the flight was detached and stored nothing.
		// Its done is closed: waiters that joined it while it was shared
		// read f.id without r.mu, so store a copy (storeLocked writes the
		// interned host into the id it is given).
		if !errors.Is(f.err, ErrClosed) {
			adopted := *f
			r.storeLocked(&ref, did, &adopted)
		}
	} else {
		// Attach it: finish stores its result, and Lookups of did join it.
		r.mu.flights[did] = f
	}
	r.mu.Unlock()
	return f.wait(ctx)
}
