package firehose

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/atrelay/relay/engine/clientip"
	"github.com/atrelay/relay/engine/fanout"
	"github.com/atrelay/relay/pool"
)

// Log is the durable event log the hub replays from (store.Store implements
// it). It must be safe for concurrent use by many consumers.
type Log interface {
	// Replay calls fn for each stored event with seq > after, in order,
	// until fn returns an error (which Replay returns) or the end of the
	// log; frame is valid only during the call.
	Replay(ctx context.Context, after uint64, fn func(seq uint64, frame []byte) error) error
	// OldestSeq returns the oldest retained seq; false when the log is empty.
	OldestSeq() (uint64, bool)
	// NewestSeq returns the newest durable seq; false when the log is empty.
	NewestSeq() (uint64, bool)
}

// Errors returned by Publish.
var (
	// ErrClosed: the hub was closed; the caller keeps its reference.
	ErrClosed = errors.New("firehose: hub closed")
	// ErrSeqOrder: the seq is not above every seq already published or
	// already durable when the hub started; the caller keeps its reference.
	ErrSeqOrder = errors.New("firehose: publish seq not increasing")
)

// slot is one ring entry; owned by the ring (guarded by Hub.mu).
type slot struct {
	seq   uint64
	frame *pool.Frame
	size  int
}

// Hub is the output firehose: the ring of recent durable frames, the set of
// connected consumers and the HTTP handler that adds them. Publish must be
// called by one goroutine (the sequencer); everything else is safe for
// concurrent use.
type Hub struct {
	// Static after NewHub.
	cfg      Config
	log      Log
	m        *hubMetrics
	ctrl     controlFrames
	server   string
	upgrader ws.HTTPUpgrader
	clients  clientip.Policy
	slots    []slot
	mask     uint64
	// adm holds the connection slots (its own lock).
	adm clientip.Admission
	// ep holds the consumers' write settings and recycles their replay
	// buffers, so only consumers that are replaying hold one.
	ep fanout.Endpoint

	// floor is the largest seq that is not in the ring: the last evicted
	// seq, or the Log's newest seq when the hub was built. Every published
	// seq above it is in the ring. Written under mu; replaying consumers
	// read it without the lock to decide when to hand over.
	floor atomic.Uint64
	// newest is the last published seq; written under mu.
	newest atomic.Uint64

	mu sync.Mutex
	// Guarded by mu.
	first, end uint64 // absolute slot indexes; the ring is [first, end)
	bytes      int    // payload bytes in the ring
	waiting    []*consumer
	consumers  map[*consumer]struct{}
	closed     bool

	// wg counts consumer and reader goroutines; Add only under mu while
	// !closed, so Close's Wait sees every one.
	wg sync.WaitGroup
}

// NewHub returns a hub serving frames from log and from Publish. Every seq
// already in log (up to its NewestSeq at this call) is served by replay;
// Publish must continue above it.
func NewHub(log Log, cfg Config) (*Hub, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h := &Hub{
		cfg:       cfg,
		log:       log,
		ctrl:      newControlFrames(),
		server:    cfg.Software + " (atproto-relay)",
		clients:   clientip.Policy{TrustedProxies: cfg.TrustedProxies},
		slots:     make([]slot, cfg.RingFrames),
		mask:      uint64(cfg.RingFrames - 1),
		consumers: make(map[*consumer]struct{}),
		ep: fanout.Endpoint{
			BatchFrames:       cfg.BatchFrames,
			WriteTimeout:      cfg.WriteTimeout,
			PingInterval:      cfg.PingInterval,
			ReplayBufferBytes: cfg.ReplayBufferBytes,
		},
	}
	h.upgrader = ws.HTTPUpgrader{Header: http.Header{"Server": []string{h.server}}}
	if n, ok := log.NewestSeq(); ok {
		h.floor.Store(n)
	}
	h.m = newHubMetrics(cfg.Metrics, h)
	return h, nil
}

// Publish appends a durable frame with the given seq to the ring and wakes
// waiting consumers. The hub takes over the caller's one reference to f and
// releases it when the frame leaves the ring. On error (ErrClosed,
// ErrSeqOrder) the caller keeps its reference. Not safe for concurrent use:
// the single sequencer goroutine calls it, in seq order.
func (h *Hub) Publish(seq uint64, f *pool.Frame) error {
	// The ring is bounded by the memory its frames pin (buffer capacity),
	// not by their length: a size class holds up to twice a frame's bytes.
	n := f.Cap()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	if last := max(h.floor.Load(), h.newest.Load()); seq <= last {
		h.mu.Unlock()
		return fmt.Errorf("%w: %d after %d", ErrSeqOrder, seq, last)
	}
	for h.end > h.first && (h.end-h.first == uint64(len(h.slots)) || h.bytes+n > h.cfg.RingBytes) {
		h.evictLocked()
	}
	s := &h.slots[h.end&h.mask]
	s.seq, s.frame, s.size = seq, f, n
	h.end++
	h.bytes += n
	h.newest.Store(seq)
	for i, c := range h.waiting {
		c.waiting = false
		c.out.Wake()
		h.waiting[i] = nil
	}
	h.waiting = h.waiting[:0]
	h.mu.Unlock()
	return nil
}

// evictLocked drops the oldest ring frame. REQUIRES: h.mu held, ring not empty.
func (h *Hub) evictLocked() {
	s := &h.slots[h.first&h.mask]
	h.floor.Store(s.seq)
	s.frame.Release()
	h.bytes -= s.size
	*s = slot{}
	h.first++
}

// fillResult says what fill found for a consumer.
type fillResult uint8

const (
	fillFrames fillResult = iota // n > 0 frames were taken from the ring
	fillWait                     // caught up; the consumer is on the waiting list
	fillReplay                   // position < floor: replay from the Log
	fillClosed                   // the hub is closed
)

// fill takes up to BatchFrames ring frames with seq > c.pos into
// c.out.Batch(), retaining each (c.out releases them once written), or
// registers c as waiting when there are none. Called only by c's writer
// goroutine.
func (h *Hub) fill(c *consumer) (int, fillResult) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return 0, fillClosed
	}
	if c.pos < h.floor.Load() {
		c.nextValid = false
		return 0, fillReplay
	}
	i := c.next
	if !c.nextValid || i < h.first || i > h.end {
		i = h.searchLocked(c.pos)
		c.nextValid = true
	}
	batch := c.out.Batch()
	n := 0
	for ; i < h.end && n < len(batch); i++ {
		s := &h.slots[i&h.mask]
		if s.seq <= c.pos {
			// Durable seqs the consumer already got by replay before
			// they were published.
			continue
		}
		batch[n] = s.frame.Retain()
		c.seqs[n] = s.seq
		n++
	}
	c.next = i
	if n > 0 {
		return n, fillFrames
	}
	if !c.waiting {
		c.waiting = true
		h.waiting = append(h.waiting, c)
	}
	return 0, fillWait
}

// searchLocked returns the absolute index of the first ring slot with
// seq > pos, or h.end. REQUIRES: h.mu held.
func (h *Hub) searchLocked(pos uint64) uint64 {
	lo, hi := h.first, h.end
	for lo < hi {
		mid := lo + (hi-lo)/2
		if h.slots[mid&h.mask].seq > pos {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// register adds c to the consumer set and accounts for its two goroutines;
// false when the hub is closed.
func (h *Hub) register(c *consumer) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.consumers[c] = struct{}{}
	h.wg.Add(2)
	return true
}

// unregister removes c from the consumer set and the waiting list.
func (h *Hub) unregister(c *consumer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.consumers, c)
	if !c.waiting {
		return
	}
	c.waiting = false
	for i, w := range h.waiting {
		if w == c {
			last := len(h.waiting) - 1
			h.waiting[i] = h.waiting[last]
			h.waiting[last] = nil
			h.waiting = h.waiting[:last]
			return
		}
	}
}

// startPosition returns where a consumer without a cursor starts: after the
// newest published seq (or the floor, before the first publish).
func (h *Hub) startPosition() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return max(h.floor.Load(), h.newest.Load())
}

// newestDurable returns the newest seq a cursor may name.
func (h *Hub) newestDurable() uint64 {
	n, _ := h.log.NewestSeq()
	return max(n, h.newest.Load(), h.floor.Load())
}

// Close disconnects every consumer (with a WebSocket close frame where the
// socket still accepts one), waits for their goroutines, and releases every
// frame in the ring. Later Publish calls return ErrClosed and new requests
// get HTTP 503. Close is idempotent.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	cs := make([]*consumer, 0, len(h.consumers))
	for c := range h.consumers {
		cs = append(cs, c)
	}
	h.mu.Unlock()
	for _, c := range cs {
		c.stop(causeHubClosed)
	}
	h.wg.Wait()
	h.mu.Lock()
	for h.end > h.first {
		h.evictLocked()
	}
	h.mu.Unlock()
}

// Mode says where a consumer is reading from.
type Mode uint8

// Consumer modes.
const (
	ModeLive   Mode = iota // from the in-memory ring
	ModeReplay             // from the Log
)

// String returns "live" or "replay".
func (m Mode) String() string {
	if m == ModeReplay {
		return "replay"
	}
	return "live"
}

// ConsumerInfo is a snapshot of one connected consumer, for the admin API.
type ConsumerInfo struct {
	RemoteAddr  string
	UserAgent   string
	Cursor      uint64 // cursor at connect; meaningful when HasCursor
	HasCursor   bool
	Position    uint64 // seq of the last frame sent (or the start position)
	Lag         uint64 // published seqs above Position
	BytesSent   uint64
	FramesSent  uint64
	ConnectedAt time.Time
	Mode        Mode
}

// Consumers returns a snapshot of the connected consumers, oldest first.
func (h *Hub) Consumers() []ConsumerInfo {
	newest := h.newest.Load()
	h.mu.Lock()
	out := make([]ConsumerInfo, 0, len(h.consumers))
	for c := range h.consumers {
		out = append(out, c.info(newest))
	}
	h.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ConnectedAt.Before(out[j].ConnectedAt) })
	return out
}

// maxLag returns the largest consumer lag in events.
func (h *Hub) maxLag() uint64 {
	newest := h.newest.Load()
	h.mu.Lock()
	defer h.mu.Unlock()
	var lag uint64
	for c := range h.consumers {
		if p := c.stats.pos.Load(); newest > p {
			lag = max(lag, newest-p)
		}
	}
	return lag
}
