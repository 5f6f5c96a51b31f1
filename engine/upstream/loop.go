package upstream

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Loop keeps WebSocket subscriptions open to many upstream hosts with a
// fixed set of goroutines: one epoll poller, Config.Readers readers,
// Config.MaxConcurrentDials dialers and one clock. Its methods are safe for
// concurrent use, including from inside the Sink.
type Loop struct {
	// Static after New.
	cfg        Config
	bufs       bufPool
	mem        *memBudget // Config.MaxBufferedBytes
	m          *loopMetrics
	ep         *poller
	ctx        context.Context // cancelled by Close; aborts dials in flight
	cancel     context.CancelFunc
	runQ       *hostQueue // hosts in stateReading waiting for a reader
	dialQ      *hostQueue // hosts in stateDialQueued
	stopClock  chan struct{}
	upgradeHdr ws.HandshakeHeader
	wg         sync.WaitGroup // every loop goroutine

	// Atomics, any goroutine.
	closed      atomic.Bool
	nextConnID  atomic.Uint64
	connected   atomic.Int64
	outstanding atomic.Int64 // bytes delivered to Sinks and not yet released
	pending     atomic.Int64 // capacity of every conn.pending buffer (keepPending)

	// mu guards hosts and conns. Lock order: Loop.mu before Host.mu.
	mu    sync.RWMutex
	hosts []*Host          // every host not yet closed; Host.index is its position
	conns map[uint64]*Host // epoll key → host, for live connections
}

// New validates cfg (after filling defaults) and starts the loop's
// goroutines.
func New(cfg Config) (*Loop, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ep, err := newPoller(256)
	if err != nil {
		return nil, err
	}
	l := &Loop{
		cfg:        cfg,
		ep:         ep,
		runQ:       newHostQueue(),
		dialQ:      newHostQueue(),
		stopClock:  make(chan struct{}),
		conns:      make(map[uint64]*Host),
		upgradeHdr: ws.HandshakeHeaderString("User-Agent: " + cfg.UserAgent + "\r\n"),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.mem = newMemBudget(l, cfg.MaxBufferedBytes, cfg.MaxFrameBytes)
	l.m = newLoopMetrics(cfg.Metrics, l)
	l.bufs = newBufPool(cfg.Metrics)
	l.wg.Add(2 + cfg.Readers + cfg.MaxConcurrentDials)
	go l.pollLoop()
	go l.clockLoop()
	for range cfg.Readers {
		r := &reader{l: l, scratch: make([]byte, cfg.ReadBufferBytes)}
		go l.readLoop(r)
	}
	for range cfg.MaxConcurrentDials {
		go l.dialLoop()
	}
	return l, nil
}

// HostOptions are per-host settings for Add.
type HostOptions struct {
	// Insecure dials ws:// instead of wss://; needs Config.AllowInsecureHosts.
	Insecure bool
	// Value is engine-owned and returned by Host.Value; never touched here.
	Value any
}

// Add starts subscribing to hostname ("pds.example.com", or "localhost:PORT"
// with AllowInsecureHosts). The first dial is queued at once. Add does not
// deduplicate: the engine's host registry decides what to subscribe to.
func (l *Loop) Add(hostname string, opts HostOptions) (*Host, error) {
	name, err := normalizeHost(hostname, l.cfg.AllowInsecureHosts)
	if err != nil {
		return nil, err
	}
	if opts.Insecure && !l.cfg.AllowInsecureHosts {
		return nil, ErrInsecureNotAllowed
	}
	h := &Host{loop: l, name: name, insecure: opts.Insecure, value: opts.Value, state: stateDialQueued}
	l.mu.Lock()
	if l.closed.Load() {
		l.mu.Unlock()
		return nil, ErrLoopClosed
	}
	h.index = len(l.hosts)
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	l.dialQ.push(h)
	return h, nil
}

// Hosts returns the number of hosts added and not yet removed.
func (l *Loop) Hosts() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.hosts)
}

// Remove stops the host's subscription. It returns at once; the connection
// is closed by its owner at the end of its current turn (frames already read
// in that turn may still reach the Sink) and the host is then forgotten.
func (l *Loop) Remove(h *Host) {
	h.mu.Lock()
	switch h.state {
	case stateClosed:
		h.mu.Unlock()
		return
	case stateWaiting:
		h.state = stateClosed
		h.mu.Unlock()
		l.unregister(h)
		return
	}
	h.req |= reqRemove
	l.kickLocked(h)
	h.mu.Unlock()
}

// Resume restarts reading a host its Sink paused. Calling it for a host
// that is not paused is harmless; a Resume racing with the pause (the Sink
// returned false while the engine already resumed) is not lost.
func (l *Loop) Resume(h *Host) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch h.state {
	case stateParked:
		h.state = stateReading
		h.lastActivity.Store(time.Now().UnixNano())
		l.runQ.push(h)
	case stateReading:
		h.req |= reqResume
	}
}

// Reconnect drops the host's connection (if any) and dials again at once
// with cursor (cursor < 0: no cursor) instead of asking Config.Cursor. Used
// after the engine handled an error frame such as FutureCursor: called from
// the Sink for an error frame (or any frame of a connection that ends for
// misbehaving), the dial keeps the cursor but waits for the host's backoff
// like any failed dial, so a host answering FutureCursor every time cannot
// make us loop.
func (l *Loop) Reconnect(h *Host, cursor int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cursor, h.hasCursor = cursor, true
	switch h.state {
	case stateClosed, stateDialQueued:
	case stateWaiting:
		h.state = stateDialQueued
		l.dialQ.push(h)
	default:
		h.req |= reqReconnect
		l.kickLocked(h)
	}
}

// kickLocked hands a host nobody owns to a reader so it acts on h.req.
// REQUIRES h.mu.
func (l *Loop) kickLocked(h *Host) {
	switch {
	case h.state == stateArmed,
		h.state == stateParked && h.req&(reqRemove|reqReconnect|reqTimeout) != 0,
		h.state == stateStarved && h.req&(reqRemove|reqReconnect|reqTimeout|reqMsgTimeout) != 0:
		h.state = stateReading
		l.runQ.push(h)
	}
}

// wake hands a starved host its grant: a reader runs its next turn. A
// host a reader owns is told through reqWake; one whose connection is gone
// meanwhile gave its grant back already (account.settle).
func (l *Loop) wake(h *Host) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch h.state {
	case stateStarved:
		h.state = stateReading
		l.runQ.push(h)
	case stateReading:
		h.req |= reqWake
	}
}

// unregister forgets a closed host.
func (l *Loop) unregister(h *Host) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := h.index
	if i < 0 || i >= len(l.hosts) || l.hosts[i] != h {
		return
	}
	last := len(l.hosts) - 1
	l.hosts[i] = l.hosts[last]
	l.hosts[i].index = i
	l.hosts[last] = nil
	l.hosts = l.hosts[:last]
	h.index = -1
}

// pollLoop is the poller goroutine: it turns readiness into queued work and
// never reads a socket itself.
func (l *Loop) pollLoop() {
	defer l.wg.Done()
	for {
		ready, woken, err := l.ep.wait()
		if woken || err != nil || l.closed.Load() {
			// err is only EBADF/EINVAL after a broken epoll fd; nothing to retry.
			return
		}
		for i := range ready {
			l.onReady(eventID(&ready[i]))
		}
	}
}

// onReady claims an armed host for a reader. Events for connections that
// have since been dropped, or for hosts a reader already owns (a kick beat
// the event), are ignored: one-shot arming means the owner re-arms anyway.
func (l *Loop) onReady(id uint64) {
	l.mu.RLock()
	h := l.conns[id]
	l.mu.RUnlock()
	if h == nil {
		return
	}
	h.mu.Lock()
	if h.state == stateArmed && h.conn != nil && h.conn.id == id {
		h.state = stateReading
		l.runQ.push(h)
	}
	h.mu.Unlock()
}

// Close stops every goroutine, closes every connection and forgets every
// host. Frames the Sink still holds stay valid and may be released later.
func (l *Loop) Close() error {
	if !l.closed.CompareAndSwap(false, true) {
		return nil
	}
	l.cancel()
	l.ep.wake()
	close(l.stopClock)
	l.runQ.close()
	l.dialQ.close()
	l.wg.Wait()
	l.mu.Lock()
	hosts := slices.Clone(l.hosts)
	l.hosts = nil
	l.mu.Unlock()
	for _, h := range hosts {
		h.mu.Lock()
		c := h.conn
		h.conn, h.state, h.index = nil, stateClosed, -1
		h.mu.Unlock()
		if c != nil {
			l.closeConn(c)
		}
	}
	l.ep.close()
	l.m.unregister()
	l.bufs.p.Unregister()
	return nil
}
