package identity

import (
	"context"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"
)

// eventually fails the test unless cond holds within five seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
	}
}

// firstRequest returns a fate giving the first request of every DID fate
// and serving the others.
func firstRequest(fate int) func(string, int) int {
	return func(_ string, n int) int {
		if n == 1 {
			return fate
		}
		return 0
	}
}

// TestPLCHedgeBoundsLostRequest: the directory never answers the first
// request of each DID (or stops halfway through its body). The hedge,
// sent PLCHedgeAfter later, answers, so a lookup takes the hedge delay
// plus an answer, within the first attempt (no retry), where without
// hedging it costs the first attempt's timeout and a retry. The lost
// request is cancelled and given back before Lookup returns, and no
// goroutine outlives the race.
func TestPLCHedgeBoundsLostRequest(t *testing.T) {
	const hedgeAfter = 200 * time.Millisecond
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		fate int
	}{{"no answer", hang}, {"body stalls", stallBody}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFlakyPLC(t, firstRequest(tc.fate))
			r, _ := newFlakyResolver(t, p, Config{PLCHedgeAfter: hedgeAfter, PLCRequestTimeout: 4 * time.Second})
			if got := r.plcTimeout(0); got != 2*hedgeAfter {
				t.Fatalf("first attempt's timeout %v, want twice the hedge delay", got)
			}
			before := runtime.NumGoroutine()
			const dids = 5
			for i := range dids {
				did := plcDID(uint64(i))
				began := time.Now()
				id, err := r.Lookup(ctx, did)
				took := time.Since(began)
				if err != nil || id.DID != did {
					t.Fatalf("%s: %+v, %v", did, id, err)
				}
				if took < hedgeAfter || took >= 2*hedgeAfter {
					t.Errorf("%s resolved in %v, want within [hedge delay, first attempt's timeout) = [%v, %v)",
						did, took, hedgeAfter, 2*hedgeAfter)
				}
				if n := p.count(did); n != 2 {
					t.Errorf("%s: %d requests, want the lost one and its hedge", did, n)
				}
				if n, tokens := r.inFlight[methodPLC].Load(), len(r.sems[methodPLC]); n != 0 || tokens != 0 {
					t.Fatalf("after Lookup: %d requests in flight, %d PLC tokens held, want the loser done", n, tokens)
				}
			}
			if h, w, rt := r.plcHedges.Get(), r.plcHedgeWins.Get(), r.plcRetries.Get(); h != dids || w != dids || rt != 0 {
				t.Errorf("%d hedges, %d won, %d retries; want %d, %d, 0", h, w, rt, dids, dids)
			}
			if n := r.resolveErrs[ReasonTimeout].Get(); n != 0 {
				t.Errorf("%d resolutions failed by timeout", n)
			}
			r.plc.mu.Lock()
			streak := r.plc.streak
			r.plc.mu.Unlock()
			if streak != 0 {
				t.Errorf("breaker streak %d: a cancelled loser counted as a failure of the directory", streak)
			}
			eventually(t, "the lost requests end on the directory", func() bool { return p.hung.Load() == 0 })
			r.clients[methodPLC].CloseIdleConnections()
			p.srv.CloseClientConnections()
			eventually(t, "goroutines back to where they were", func() bool { return runtime.NumGoroutine() <= before })
		})
	}

	t.Run("off", func(t *testing.T) {
		p := newFlakyPLC(t, firstRequest(hang))
		r, _ := newFlakyResolver(t, p, Config{PLCHedgeAfter: -1, PLCRequestTimeout: 2 * time.Second,
			PLCRetryBackoff: time.Millisecond})
		began := time.Now()
		if _, err := r.Lookup(ctx, plcDID(1)); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); took < 500*time.Millisecond {
			t.Errorf("resolved in %v without hedging, want the first attempt's 500 ms timeout first", took)
		}
		if h, rt := r.plcHedges.Get(), r.plcRetries.Get(); h != 0 || rt != 1 {
			t.Errorf("%d hedges, %d retries; want 0, 1", h, rt)
		}
	})
}

// TestPLCHedgeAtMostOne: a DID whose first three requests are lost gets
// one hedge, in its first attempt (both requests time out there), and
// none in its retries: attempt 1's request waits out its own timeout,
// attempt 2's answers.
func TestPLCHedgeAtMostOne(t *testing.T) {
	did := plcDID(7)
	p := newFlakyPLC(t, func(_ string, n int) int {
		if n <= 3 {
			return hang
		}
		return 0
	})
	r, _ := newFlakyResolver(t, p, Config{PLCHedgeAfter: 100 * time.Millisecond, PLCRequestTimeout: 2 * time.Second,
		PLCRetries: 2, PLCRetryBackoff: time.Millisecond})
	if _, err := r.Lookup(context.Background(), did); err != nil {
		t.Fatal(err)
	}
	if n := p.count(did); n != 4 {
		t.Errorf("%d requests, want 4", n)
	}
	if h, w, rt := r.plcHedges.Get(), r.plcHedgeWins.Get(), r.plcRetries.Get(); h != 1 || w != 0 || rt != 2 {
		t.Errorf("%d hedges, %d won, %d retries; want 1, 0, 2 (a second hedge would have spared a retry)", h, w, rt)
	}
}

// TestPLCHedgeTakesTokenAndTurn: a hedge holds a PLC token while it runs,
// is not sent when no token is free, and waits for its turn in the pace.
func TestPLCHedgeTakesTokenAndTurn(t *testing.T) {
	ctx := context.Background()

	t.Run("token", func(t *testing.T) {
		p := newFlakyPLC(t, func(_ string, n int) int {
			if n <= 2 {
				return hang
			}
			return 0
		})
		r, _ := newFlakyResolver(t, p, Config{PLCMaxInFlight: 2, PLCHedgeAfter: 300 * time.Millisecond,
			PLCRequestTimeout: 4 * time.Second, PLCRetryBackoff: time.Millisecond})
		var wg sync.WaitGroup
		wg.Go(func() {
			if _, err := r.Lookup(ctx, plcDID(1)); err != nil {
				t.Error(err)
			}
		})
		eventually(t, "the request and its hedge both hang", func() bool { return p.hung.Load() == 2 })
		if n, tokens := r.inFlight[methodPLC].Load(), len(r.sems[methodPLC]); n != 2 || tokens != 2 {
			t.Errorf("%d requests in flight, %d tokens held; want the hedge counted: 2, 2", n, tokens)
		}
		wg.Wait()
	})

	t.Run("no free token", func(t *testing.T) {
		p := newFlakyPLC(t, firstRequest(hang))
		r, _ := newFlakyResolver(t, p, Config{PLCMaxInFlight: 1, PLCHedgeAfter: 100 * time.Millisecond,
			PLCRequestTimeout: 2 * time.Second, PLCRetryBackoff: time.Millisecond})
		if _, err := r.Lookup(ctx, plcDID(2)); err != nil {
			t.Fatal(err)
		}
		if h, rt := r.plcHedges.Get(), r.plcRetries.Get(); h != 0 || rt != 1 {
			t.Errorf("%d hedges, %d retries; want 0, 1 (the only token is the lost request's)", h, rt)
		}
	})

	t.Run("pace", func(t *testing.T) {
		p := newFlakyPLC(t, firstRequest(hang))
		r, _ := newFlakyResolver(t, p, Config{PLCMaxRate: 2, PLCHedgeAfter: 300 * time.Millisecond,
			PLCRequestTimeout: 4 * time.Second})
		if _, err := r.Lookup(ctx, plcDID(3)); err != nil {
			t.Fatal(err)
		}
		p.mu.Lock()
		times := append([]time.Time(nil), p.times...)
		p.mu.Unlock()
		if len(times) != 2 || r.plcHedgeWins.Get() != 1 {
			t.Fatalf("%d requests, %d hedges won; want 2, 1", len(times), r.plcHedgeWins.Get())
		}
		// At 2 requests a second the hedge's turn comes 500 ms after the
		// request it hedges, not at the 300 ms hedge delay.
		if gap := times[1].Sub(times[0]); gap < 450*time.Millisecond {
			t.Errorf("hedge sent %v after its request, want its turn in the pace (500 ms)", gap)
		}
	})
}

// TestPLCHedgeOffAfter429: once a 429 has cut the pace no hedge is sent
// (it would take another DID's turn at a directory already at its limit):
// a lost request waits out its attempt's timeout and is retried. The
// limiter allows hedges again once the pace is back at its maximum, and
// never while a Retry-After pauses every request.
func TestPLCHedgeOffAfter429(t *testing.T) {
	limited, lost := plcDID(1), plcDID(2)
	p := newFlakyPLC(t, func(did string, n int) int {
		switch {
		case did == limited && n == 1:
			return http.StatusTooManyRequests
		case did == lost && n == 1:
			return hang
		}
		return 0
	})
	p.retryAfter = "0"
	r, _ := newFlakyResolver(t, p, Config{PLCHedgeAfter: 100 * time.Millisecond, PLCRequestTimeout: 2 * time.Second,
		PLCRetryBackoff: time.Millisecond})
	ctx := context.Background()
	if _, err := r.Lookup(ctx, limited); err != nil {
		t.Fatal(err)
	}
	if r.plc.hedgeable() {
		t.Fatal("hedgeable after a round of 429s")
	}
	began := time.Now()
	if _, err := r.Lookup(ctx, lost); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took < 200*time.Millisecond {
		t.Errorf("lost request resolved in %v, want the first attempt's 200 ms timeout and a retry", took)
	}
	if h, rt := r.plcHedges.Get(), r.plcRetries.Get(); h != 0 || rt != 2 {
		t.Errorf("%d hedges, %d retries; want 0, 2", h, rt)
	}

	l := newPLCLimiter(100, time.Second)
	round, err := l.wait(ctx)
	if err != nil || !l.hedgeable() {
		t.Fatalf("fresh limiter: hedgeable %v, %v", l.hedgeable(), err)
	}
	l.limited(round, 0)
	for range 100_000 {
		l.answered()
	}
	if !l.hedgeable() {
		t.Fatalf("pace back at %v: not hedgeable", l.current())
	}
	l.limited(round, time.Second) // an old round: no cut, but a pause
	if l.current() != 100 || l.hedgeable() {
		t.Fatalf("paused at pace %v: hedgeable %v", l.current(), l.hedgeable())
	}
}
