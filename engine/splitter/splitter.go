package splitter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/pool"
	"github.com/atrelay/relay/store"
)

// Errors of Start and Health.
var (
	// ErrStarted: Start was called twice.
	ErrStarted = errors.New("splitter: already started")
	// ErrUpstreamDown: the upstream has been disconnected for longer than
	// Config.UnhealthyAfter.
	ErrUpstreamDown = errors.New("splitter: upstream disconnected")
)

// Splitter follows one upstream relay into its own log and serves it. New
// builds it, Start runs its two goroutines, Close stops them; Handler is
// safe for concurrent use at any time.
type Splitter struct {
	// Static after New.
	cfg     Config
	ep      endpoint
	st      *store.Store
	hub     *firehose.Hub
	onPub   func()
	log     *slog.Logger
	m       *splitterMetrics
	q       *queue
	frames  *pool.Frames
	api     *api
	ctx     context.Context // ends on Close or a store failure
	cancel  context.CancelFunc
	started atomic.Bool

	// Written by the reader goroutine, read by anyone.
	connected atomic.Bool
	behind    atomic.Bool   // the upstream is behind our newest seq (see the package doc)
	seen      atomic.Uint64 // the last seq the upstream sent, stored or not
	changedAt atomic.Int64  // UnixNano of the last connect or disconnect (New at first)

	// advanced wakes subscribeRepos requests waiting for a future cursor.
	advanced seqWatch

	// failed is closed, and err set, when a store write fails.
	failOnce sync.Once
	failed   chan struct{}
	err      atomic.Pointer[error]

	wg        sync.WaitGroup // the reader and writer goroutines
	closeOnce sync.Once
}

// New checks cfg and deps and builds a splitter; nothing is dialed before
// Start.
func New(cfg Config, deps Deps) (*Splitter, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Hub == nil {
		return nil, fmt.Errorf("%w: Deps.Store and Deps.Hub are required", ErrConfig)
	}
	ep, _ := parseUpstream(cfg.Upstream)
	if deps.Metrics == nil {
		deps.Metrics = metrics.NewSet()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Splitter{
		cfg: cfg, ep: ep, st: deps.Store, hub: deps.Hub, onPub: deps.OnPublish, log: deps.Logger,
		q:      newQueue(cfg.QueueBytes, cfg.QueueFrames),
		frames: pool.NewFrames(pool.NewBuffers(deps.Metrics, "splitter")),
		failed: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.changedAt.Store(time.Now().UnixNano())
	s.m = newSplitterMetrics(deps.Metrics, s)
	s.api = newAPI(s)
	return s, nil
}

// Start runs the reader (upstream connection) and the writer (store and
// hub) goroutines.
func (s *Splitter) Start() error {
	if !s.started.CompareAndSwap(false, true) {
		return ErrStarted
	}
	s.wg.Add(2)
	go s.readLoop()
	go s.writeLoop()
	return nil
}

// Close stops both goroutines, drops the upstream connection and releases
// the frames read but not yet stored (the next start fetches them again
// from the newest stored seq). It closes neither the store nor the hub.
// Idempotent.
func (s *Splitter) Close() {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.q.drain()
	})
}

// Done is closed when the splitter stopped on its own: a store write failed
// (see Err). Close does not close it.
func (s *Splitter) Done() <-chan struct{} { return s.failed }

// Err returns the store failure that stopped the splitter, or nil.
func (s *Splitter) Err() error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

// fail records a store failure and stops the splitter: memory and disk may
// disagree, so nothing more is written or read upstream.
func (s *Splitter) fail(err error) {
	s.failOnce.Do(func() {
		s.err.Store(&err)
		s.log.Error("splitter: store write failed; stopping", "err", err)
		s.cancel()
		close(s.failed)
	})
}

// Status is a snapshot of the splitter for health checks and the admin
// view; a value owned by the caller.
type Status struct {
	Upstream  string    // host[:port]
	Connected bool      // an upstream connection is up
	Since     time.Time // when Connected last changed (New, before the first dial)
	// Behind: the upstream is behind our newest seq (a reset, or a lagging
	// replica); we serve our log and wait for it to pass.
	Behind     bool
	NewestSeq  uint64 // newest stored seq
	OldestSeq  uint64 // oldest retained seq; 0 when the log is empty
	UpstreamAt uint64 // last seq the upstream sent
	Err        error  // the store failure that stopped the splitter
}

// Status returns the current Status.
func (s *Splitter) Status() Status {
	return Status{
		Upstream:   s.ep.host,
		Connected:  s.connected.Load(),
		Since:      time.Unix(0, s.changedAt.Load()),
		Behind:     s.behind.Load(),
		NewestSeq:  uint64(s.st.NewestSeq()),
		OldestSeq:  uint64(s.st.OldestSeq()),
		UpstreamAt: s.seen.Load(),
		Err:        s.Err(),
	}
}

// Health returns nil while the splitter can serve fresh events: the store
// works and the upstream is connected or was lost less than
// Config.UnhealthyAfter ago (reconnects are normal; a long outage should
// move consumers to a splitter that still has its upstream).
func (s *Splitter) Health() error {
	if err := s.Err(); err != nil {
		return err
	}
	if !s.connected.Load() {
		if since := time.Since(time.Unix(0, s.changedAt.Load())); since > s.cfg.UnhealthyAfter {
			return fmt.Errorf("%w for %v", ErrUpstreamDown, since.Truncate(time.Second))
		}
	}
	return nil
}

func (s *Splitter) setConnected(on bool) {
	s.connected.Store(on)
	s.changedAt.Store(time.Now().UnixNano())
}

// writeLoop is the writer goroutine: it takes what the reader queued, in
// batches of up to the store's MaxBatchEvents, makes each batch durable
// with one AppendAt, then hands its frames to the hub. A store failure
// stops the splitter.
func (s *Splitter) writeLoop() {
	defer s.wg.Done()
	n := s.st.MaxBatchEvents()
	batch := make([]item, 0, n)
	evs := make([]store.SeqEvent, 0, n)
	for {
		var err error
		batch, err = s.q.take(s.ctx, batch[:0], n)
		if err != nil {
			return
		}
		evs = evs[:0]
		for i := range batch {
			it := &batch[i]
			evs = append(evs, store.SeqEvent{Seq: store.Seq(it.seq), Kind: it.kind, DID: it.did, Frame: it.frame.Bytes()})
		}
		err = s.st.AppendAt(evs)
		clear(evs) // drop the views into frames the hub may recycle
		if err != nil {
			for i := range batch {
				batch[i].frame.Release()
			}
			clear(batch)
			s.fail(err)
			return
		}
		for i := range batch {
			if err := s.hub.Publish(batch[i].seq, batch[i].frame); err != nil {
				// Closed (shutting down): the frame is durable and will be
				// served by replay after a restart.
				batch[i].frame.Release()
			}
		}
		clear(batch)
		s.m.batches.Inc()
		s.advanced.notify()
		if s.onPub != nil {
			s.onPub()
		}
	}
}

// seqWatch lets goroutines wait for the next durable batch without the
// writer paying anything while nobody waits. Safe for concurrent use.
type seqWatch struct {
	mu sync.Mutex
	ch chan struct{} // closed by notify; nil while nobody waits
}

// wait returns a channel closed at the next notify.
func (w *seqWatch) wait() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

// notify wakes every waiter.
func (w *seqWatch) notify() {
	w.mu.Lock()
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
	w.mu.Unlock()
}
