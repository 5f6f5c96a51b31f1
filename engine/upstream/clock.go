package upstream

import "time"

// clockLoop is the single timer of the loop: every Tick it scans all hosts
// once, queueing due redials and checking liveness. One goroutine and one
// ticker instead of a timer per host: with thousands of mostly idle hosts a
// scan costs microseconds, and Tick is the accepted timer granularity.
func (l *Loop) clockLoop() {
	defer l.wg.Done()
	t := time.NewTicker(l.cfg.Tick)
	defer t.Stop()
	var scan []*Host // reused between ticks; owned by this goroutine
	for {
		select {
		case <-l.stopClock:
			return
		case now := <-t.C:
			scan = l.tick(now, scan)
		}
	}
}

// tick runs one scan. Liveness: a connection that read nothing for IdlePing
// gets a ping (sent by a reader, the owner); if still nothing has been read
// PongTimeout after the ping, it is dropped with reason "timeout". Any bytes
// count as life, not only pongs, but not as progress: a message begun more
// than MessageTimeout ago is dropped (reason "message_timeout") however
// steadily its bytes trickle in; readers check that after every read, the
// clock catches a host that went silent mid-message. Parked hosts are
// skipped: we are the ones not reading. Starved hosts only have their
// message clock checked: a partial message holds buffer budget others may
// wait for (memBudget).
func (l *Loop) tick(now time.Time, scan []*Host) []*Host {
	l.mu.RLock()
	scan = append(scan[:0], l.hosts...)
	l.mu.RUnlock()
	nowNs := now.UnixNano()
	idle, pong := l.cfg.IdlePing.Nanoseconds(), l.cfg.PongTimeout.Nanoseconds()
	msgTimeout := l.cfg.MessageTimeout.Nanoseconds()
	for _, h := range scan {
		h.mu.Lock()
		switch h.state {
		case stateWaiting:
			if !now.Before(h.retryAt) {
				h.state = stateDialQueued
				l.dialQ.push(h)
			}
		case stateArmed:
			last, start := h.lastActivity.Load(), h.msgStart.Load()
			switch {
			case start != 0 && nowNs-start >= msgTimeout:
				h.req |= reqMsgTimeout
				l.kickLocked(h)
			case h.pingSent > last && nowNs-h.pingSent >= pong:
				h.req |= reqTimeout
				l.kickLocked(h)
			case h.pingSent <= last && nowNs-last >= idle:
				h.req |= reqPing
				h.pingSent = nowNs
				l.kickLocked(h)
			}
		case stateStarved:
			if start := h.msgStart.Load(); start != 0 && nowNs-start >= msgTimeout {
				h.req |= reqMsgTimeout
				l.kickLocked(h)
			}
		}
		h.mu.Unlock()
	}
	clear(scan) // do not keep removed hosts alive until the next tick
	return scan[:0]
}
