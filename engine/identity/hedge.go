package identity

import (
	"context"
	"errors"
	"time"
)

// Hedged PLC requests.
//
// The directory now and then never answers a request (issue 16 models
// 0.5 % of them). The relay's sequencer holds a host's results behind its
// earliest unfinished frame, so such a request used to stall every account
// of its host for the attempt's whole timeout, and a big host with about
// one lost request a second stalled for good. So while an attempt of a
// did:plc resolution is unanswered after PLCHedgeAfter, a second request
// for the same DID is sent (the hedge), and the first to bring an answer
// wins; the other is cancelled. A lost request then costs PLCHedgeAfter
// plus one answer time.
//
// The hedge adds load only where it helps: it takes a free PLC token (it
// never waits for one, so it never queues ahead of another DID's first
// request) and its turn in the pace, a resolution sends at most one, and
// none is sent while a 429 holds the pace down or the breaker is open
// (plcLimiter.hedgeable). Against the modelled directory that is about
// 1 % more requests.
//
// The delay is fixed rather than derived from observed answer times: the
// case it exists for is the request that never comes back, which a fixed
// bound caps as well as an adaptive one, and a fixed delay is one number
// an operator can reason about. When the directory slows across the
// board, the token and pace rules, not the delay, keep hedges from
// piling load on it: busy tokens send none.

// answer is the outcome of one request of a race.
type answer struct {
	id    Identity
	err   error
	hedge bool
}

// race runs the attempt's request (ctx and release from slot, round its
// turn in the pace) and, if it has not answered within PLCHedgeAfter,
// one hedge (clearing *hedge), and returns the first answer that is not a
// transient failure, or the first transient failure when both fail. The
// loser is cancelled and waited for: no request outlives race, and each
// gives its token back and closes its body (fetch) before race returns.
func (r *Resolver) race(ctx context.Context, release func(), ref *didRef, did string, round uint64, hedge *bool) (Identity, error) {
	answers := make(chan answer, 2) // buffered: a sender never waits for race
	primary, cancelPrimary := context.WithCancelCause(ctx)
	defer cancelPrimary(nil)
	go func() {
		id, err := r.send(primary, release, ref, did, round)
		answers <- answer{id: id, err: err}
	}()
	pending := 1
	cancelHedge := func(error) {}
	defer func() { cancelHedge(nil) }()
	timer := time.NewTimer(r.cfg.PLCHedgeAfter)
	defer timer.Stop()
	var failed *answer // the first transient failure
	for {
		select {
		case <-timer.C:
			deadline, _ := ctx.Deadline()
			if cancel, ok := r.startHedge(ref, did, deadline, answers); ok {
				*hedge = false
				cancelHedge = cancel
				pending++
			}
			continue
		case a := <-answers:
			pending--
			switch {
			case a.err == errNotSent:
			case !IsTransient(a.err): // a document, the directory's verdict, or ErrClosed
				cancelPrimary(errLost)
				cancelHedge(errLost)
				for ; pending > 0; pending-- {
					<-answers
				}
				if a.hedge {
					r.plcHedgeWins.Inc()
				}
				return a.id, a.err
			case failed == nil:
				failed = &a
			}
		}
		if pending == 0 {
			// failed is set: the primary's answer has arrived, and only a
			// hedge reports errNotSent.
			return failed.id, failed.err
		}
	}
}

// startHedge sends the hedge of did's race, if the directory may be sent
// one (plcLimiter.hedgeable) and a PLC token is free, with the attempt's
// deadline; its answer (or errNotSent) arrives on answers. It returns the
// hedge's cancel function, and false when no hedge was started.
func (r *Resolver) startHedge(ref *didRef, did string, deadline time.Time, answers chan<- answer) (context.CancelCauseFunc, bool) {
	if !r.plc.hedgeable() {
		return nil, false
	}
	select {
	case r.sems[methodPLC] <- struct{}{}:
	default:
		return nil, false
	}
	ctx, cancel := context.WithCancelCause(r.ctx)
	reqCtx, cancelReq := context.WithDeadline(ctx, deadline)
	release := func() { cancelReq(); <-r.sems[methodPLC] }
	go func() {
		round, err := r.plc.wait(reqCtx)
		if err != nil {
			release()
			answers <- answer{err: errNotSent, hedge: true}
			return
		}
		r.plcHedges.Inc()
		id, err := r.send(reqCtx, release, ref, did, round)
		answers <- answer{id: id, err: err, hedge: true}
	}()
	return cancel, true
}

// errLost is the cancel cause of a race's losing request: unless it was
// answered first, send counts it as no answer (the pace and the breaker
// ignore it).
var errLost = errors.New("identity: the other request of a hedged race answered first")

// errNotSent is what the hedge reports when it got no turn in the pace
// (the breaker opened, the attempt's deadline passed, or it lost while it
// waited).
var errNotSent = errors.New("identity: hedge not sent")
