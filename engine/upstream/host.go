package upstream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/bytebufferpool"
)

// hostState is where a host is in its life; it says which goroutine, if any,
// owns the host's connection.
type hostState uint8

const (
	stateWaiting    hostState = iota // no connection; the clock dials it at retryAt
	stateDialQueued                  // in the dial queue
	stateDialing                     // a dialer goroutine owns it
	stateArmed                       // connection registered in epoll; nobody owns it
	stateReading                     // queued for or owned by a reader goroutine
	stateParked                      // Sink paused it; connection open, not armed
	stateStarved                     // waits for buffer budget (memBudget); connection open, not armed
	stateClosed                      // removed or loop closed; final
)

// Pending requests from other goroutines, handled by the connection's owner
// at its next turn (bits of Host.req).
const (
	reqRemove     = 1 << iota // Remove was called
	reqReconnect              // Reconnect was called
	reqTimeout                // liveness check failed
	reqPing                   // liveness wants a ping sent
	reqResume                 // Resume arrived while a reader owned the host
	reqMsgTimeout             // a message in flight outlived Config.MessageTimeout
	reqWake                   // the buffer budget granted bytes while a reader owned the host
)

// Host is one upstream PDS firehose. Create it with Loop.Add. Its methods
// are safe for concurrent use.
type Host struct {
	// Static after Add.
	loop     *Loop
	name     string // host[:port], lower case
	insecure bool   // ws:// instead of wss://
	value    any

	// Counters, atomic: written by loop goroutines, read by anyone.
	frames       atomic.Uint64
	bytes        atomic.Uint64
	errs         [numReasons]atomic.Uint64
	outstanding  atomic.Int64  // bytes delivered to the Sink and not yet released
	lastActivity atomic.Int64  // unix nanos of the last bytes read; written by the owner
	msgStart     atomic.Int64  // unix nanos the message in flight began (0: none); written by the owner
	nextLog      atomic.Int64  // unix nanos before which LogAllowed refuses
	logDropped   atomic.Uint64 // LogAllowed refusals since its last yes

	index int // position in Loop.hosts; guarded by Loop.mu

	// mu guards the fields below. Lock order: Loop.mu before Host.mu.
	mu        sync.Mutex
	state     hostState
	req       uint8 // req* bits
	conn      *conn // non-nil from a successful dial until the owner drops it
	failures  int   // consecutive failed dials / unproductive connections
	retryAt   time.Time
	pingSent  int64 // unix nanos of our last ping on this connection
	cursor    int64 // from Reconnect, used by the next dial if hasCursor
	hasCursor bool

	// Guarded by Loop.mem.mu: bytes the buffer budget granted the host and
	// its turns have not used yet, and whether it is in the budget's queue.
	grant  int64
	queued bool
}

// Name is the hostname (with ":port" for development hosts).
func (h *Host) Name() string { return h.name }

// Value is the engine-owned value given in HostOptions.
func (h *Host) Value() any { return h.value }

// Frames is the number of messages delivered to the Sink.
func (h *Host) Frames() uint64 { return h.frames.Load() }

// Bytes is the number of message payload bytes delivered to the Sink.
func (h *Host) Bytes() uint64 { return h.bytes.Load() }

// Errors is how many connection attempts or connections ended for reason r.
func (h *Host) Errors(r Reason) uint64 {
	if r >= numReasons {
		return 0
	}
	return h.errs[r].Load()
}

// Outstanding is the bytes of frames delivered to the Sink and not yet
// released: the per-host memory the engine is holding. A Sink can pause the
// host (return false) when this passes its budget.
func (h *Host) Outstanding() int64 { return h.outstanding.Load() }

// LogAllowed reports whether a log line about this host that carries remote
// text (an #info or error frame's name and message, a handshake error) may
// be written now: at most one per Config.LogInterval per host, so no host
// can flood the log. A refused line is counted in
// relay_upstream_log_suppressed_total; suppressed is how many were refused
// since the last allowed line, for that line to mention. Pass the remote
// text itself through LogString.
func (h *Host) LogAllowed() (ok bool, suppressed uint64) {
	now := time.Now().UnixNano()
	next := h.nextLog.Load()
	if now < next || !h.nextLog.CompareAndSwap(next, now+h.loop.cfg.LogInterval.Nanoseconds()) {
		h.logDropped.Add(1)
		h.loop.m.logSuppressed.Inc()
		return false, 0
	}
	return true, h.logDropped.Swap(0)
}

// Connected reports whether the host has an upgraded connection.
func (h *Host) Connected() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conn != nil
}

// Paused reports whether the Sink paused the host and Resume has not yet
// restarted it.
func (h *Host) Paused() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state == stateParked
}

// Failures is the number of consecutive failed attempts (0 once a
// connection delivers a message).
func (h *Host) Failures() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failures
}

// Frame is one complete binary WebSocket message handed to the Sink, which
// owns it until Release. Bytes aliases a pooled buffer: it is valid only
// until Release. Frame is a small value; copies share the buffer, so release
// exactly one of them, once.
type Frame struct {
	b *bytebufferpool.ByteBuffer
	h *Host
}

// Bytes is the message (CBOR header ‖ payload); valid until Release.
func (f Frame) Bytes() []byte { return f.b.B }

// Len is len(f.Bytes()).
func (f Frame) Len() int { return len(f.b.B) }

// Cap is the capacity of the frame's buffer: the memory it holds until
// Release, what a Sink should count against its own bounds. Buffers come
// in size classes, so it may be several times Len (a 70 KB message holds
// a 512 KiB buffer).
func (f Frame) Cap() int { return cap(f.b.B) }

// Host is the host the frame came from.
func (f Frame) Host() *Host { return f.h }

// Release returns the buffer to the pool and credits the host's outstanding
// bytes. Calling it twice on the same frame corrupts the pool.
func (f Frame) Release() {
	n := int64(len(f.b.B))
	f.h.outstanding.Add(-n)
	f.h.loop.outstanding.Add(-n)
	f.h.loop.bufs.put(f.b)
}
