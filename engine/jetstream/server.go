package jetstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/klauspost/compress/zstd"

	"github.com/atrelay/relay/engine/clientip"
	"github.com/atrelay/relay/engine/fanout"
	"github.com/atrelay/relay/pool"
)

// errStopScan ends a Source.ReplayTimed scan early.
var errStopScan = errors.New("jetstream: scan stopped")

// Server is the Jetstream endpoint: the pump that follows the relay's log,
// stamps and converts each event, and fans the encoded messages out to the
// live subscribers; and the HTTP handler that adds subscribers. Notify and
// ServeHTTP are safe for concurrent use.
type Server struct {
	// Static after New.
	cfg         Config
	src         Source
	m           *serverMetrics
	zenc        *zstd.Encoder
	frames      *pool.Frames
	upgrader    ws.HTTPUpgrader
	clients     clientip.Policy
	server      string
	notify      chan struct{} // one slot: Notify sends without blocking
	replaySlots chan struct{} // MaxReplays tokens
	ctx         context.Context
	cancel      context.CancelFunc
	pumpDone    chan struct{}
	// ep holds the subscribers' write settings and recycles their replay
	// buffers, so only subscribers that are replaying hold one.
	ep fanout.Endpoint
	// adm holds the connection slots (its own lock): MaxSubscribers in
	// all, MaxSubscribersPerIP per client.
	adm clientip.Admission

	// Owned by the pump goroutine (and by New before it starts).
	pc    converter
	jbuf  []byte // JSON of the event being fanned out
	zbuf  []byte // its compressed form
	pumpF func(seq uint64, unixMilli int64, frame []byte) error
	// evSubs are, for the relay event being fanned out, the live
	// subscribers whose filter passes its DID, in live's order, each with
	// that filter: the DID is the same for every op of a commit, so it is
	// tested once per event rather than once per op. Used under mu.
	evSubs []subFilter

	// pumpSeq mirrors doneSeq for the metrics gauge.
	pumpSeq atomic.Uint64

	mu sync.Mutex
	// Guarded by mu.
	live     []*subscriber // fed by the pump
	anyDead  bool          // some subscriber in live is marked dead
	all      map[*subscriber]struct{}
	doneSeq  uint64 // the last relay seq the pump has fanned out
	lastTime int64  // the pump's last stamp (0 before any)
	closed   bool
	// made is the bytes (buffer capacity) of every message the pump has
	// made; a queued message's mark is made once it was (BacklogBytes).
	// sweptAt is made at the last sweep of the live subscribers.
	made, sweptAt int64

	// wg counts subscriber goroutines; Add only under mu while !closed.
	wg sync.WaitGroup
}

// New returns an endpoint serving src and starts its pump. Events already
// in src are served only to subscribers with a cursor; New reads the log's
// newest second to continue its stamps exactly, so it fails if src does.
// Call Notify after each durable append; Close when done.
func New(src Source, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// Jetstream's encoder settings (dictionary, 128 KiB window), at the
	// fastest level: on the capture's messages it compresses as well as
	// the default level (ratio 0.537 against 0.535) at a third of the CPU
	// (11 µs against 36 µs per message), because each message is one small
	// frame and most of the gain comes from the dictionary.
	zenc, err := zstd.NewWriter(nil,
		zstd.WithEncoderDict(dictV1),
		zstd.WithWindowSize(1<<17),
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(cfg.CompressConcurrency))
	if err != nil {
		return nil, fmt.Errorf("jetstream: zstd encoder: %w", err)
	}
	s := &Server{
		cfg:         cfg,
		src:         src,
		zenc:        zenc,
		frames:      pool.NewFrames(pool.NewBuffers(cfg.Metrics, "jetstream")),
		server:      cfg.Software + " (atproto-relay)",
		clients:     clientip.Policy{TrustedProxies: cfg.TrustedProxies},
		notify:      make(chan struct{}, 1),
		replaySlots: make(chan struct{}, cfg.MaxReplays),
		pumpDone:    make(chan struct{}),
		all:         make(map[*subscriber]struct{}),
		ep: fanout.Endpoint{
			BatchFrames:       cfg.BatchMessages,
			WriteTimeout:      cfg.WriteTimeout,
			PingInterval:      cfg.PingInterval,
			ReplayBufferBytes: cfg.ReplayBufferBytes,
		},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.upgrader = ws.HTTPUpgrader{Header: http.Header{"Server": []string{s.server}}}
	s.pumpF = s.pumpEvent
	s.m = newServerMetrics(cfg.Metrics, s)
	if newest, ok := src.NewestSeq(); ok {
		// Stamp the newest second without sending it anywhere, so the
		// first live stamps continue it as a replay would compute them.
		start, err := s.secondStart(newest)
		if err != nil {
			zenc.Close()
			return nil, fmt.Errorf("jetstream: reading the log: %w", err)
		}
		s.doneSeq = start - 1
		s.pumpSeq.Store(start - 1)
		if err := s.follow(); err != nil {
			zenc.Close()
			return nil, fmt.Errorf("jetstream: reading the log: %w", err)
		}
	}
	go s.pump()
	return s, nil
}

// Notify tells the pump that new events are durable in the log. It never
// blocks; calls made while the pump is busy coalesce.
func (s *Server) Notify() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// pump follows the log until Close.
func (s *Server) pump() {
	defer close(s.pumpDone)
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.notify:
		case <-t.C:
		}
		if err := s.follow(); err != nil && s.ctx.Err() == nil {
			s.m.pumpErrors.Inc()
			s.cfg.Logger.Warn("jetstream pump: reading the log failed", "after", s.doneSeqNow(), "err", err)
		}
	}
}

func (s *Server) doneSeqNow() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.doneSeq
}

// follow runs one pass of the pump over the log's new events. Only the pump
// (or New, before it starts) calls it, so doneSeq changes only here.
//
// With no live subscriber the pump reads nothing but the newest second:
// it skips to that second's first event and stamps it with a fresh clock,
// exactly as New does, so a relay nobody reads Jetstream from pays almost
// nothing for it, and the next live stamps are still the ones a replay
// computes (a stamp depends only on the events of its own second).
func (s *Server) follow() error {
	s.mu.Lock()
	idle := len(s.live) == 0
	s.mu.Unlock()
	if idle {
		if newest, ok := s.src.NewestSeq(); ok && newest > s.pumpSeq.Load() {
			start, err := s.secondStart(newest)
			if err != nil {
				return err
			}
			// A replaying subscriber joins the live set under s.mu once it
			// covered doneSeq: jump only if none joined meanwhile, so no
			// subscriber is handed over behind the jump.
			s.mu.Lock()
			if len(s.live) == 0 && start-1 > s.doneSeq {
				s.pc.clock.reset()
				s.doneSeq = start - 1
				s.pumpSeq.Store(start - 1)
			}
			s.mu.Unlock()
		}
	}
	return s.src.ReplayTimed(s.ctx, s.pumpSeq.Load(), s.pumpF)
}

// pumpEvent stamps and converts one relay event and fans its Jetstream
// events out to the live subscribers (the pump's ReplayTimed callback).
func (s *Server) pumpEvent(seq uint64, unixMilli int64, frame []byte) error {
	if seq <= s.pumpSeq.Load() {
		return nil
	}
	if err := s.pc.load(seq, unixMilli, frame); err != nil {
		s.m.badFrames.Inc()
	}
	s.m.events.Add(len(s.pc.cands))
	s.mu.Lock()
	if len(s.pc.cands) > 0 {
		s.matchDIDLocked()
		for i := range s.pc.cands {
			s.fanoutLocked(i)
		}
		// Subscribers that left and filters since replaced are not kept
		// alive.
		clear(s.evSubs)
	}
	s.doneSeq = seq
	s.lastTime = s.pc.clock.last
	if s.made-s.sweptAt > int64(s.cfg.BacklogBytes)/16 {
		s.sweepLocked()
	}
	if s.anyDead {
		s.dropDeadLocked()
	}
	s.mu.Unlock()
	s.pumpSeq.Store(seq)
	return nil
}

// subFilter is a subscriber and the filter it had when the pump's current
// event began.
type subFilter struct {
	sub *subscriber
	f   *filter
}

// matchDIDLocked fills s.evSubs for the pump's current event. Each
// subscriber's filter is read once here, so an options_update takes effect
// from the next relay event on, never between two ops of a commit.
// REQUIRES: s.mu held, called by the pump.
func (s *Server) matchDIDLocked() {
	did := s.pc.did()
	s.evSubs = s.evSubs[:0]
	for _, sub := range s.live {
		if f := sub.filter.Load(); f.wantsDID(did) {
			s.evSubs = append(s.evSubs, subFilter{sub, f})
		}
	}
}

// fanoutLocked queues candidate i of the pump's converter to every live
// subscriber that wants it. The JSON is encoded at most once, when the
// first subscriber wants it, and compressed at most once, when the first
// compressing subscriber wants it; every subscriber queues a reference to
// the same bytes. REQUIRES: s.mu held since matchDIDLocked, called by the
// pump.
func (s *Server) fanoutLocked(i int) {
	c := &s.pc.cands[i]
	var js, zs *pool.Frame
	var jsMark, zsMark int64
	for _, w := range s.evSubs {
		sub, f := w.sub, w.f
		if sub.dead || c.seq <= sub.after || c.timeUS < sub.minTime {
			continue
		}
		if !f.wantsCollection(c.kind, c.collection) {
			continue
		}
		if js == nil {
			var why skip
			s.jbuf, why = s.pc.appendJSON(s.jbuf[:0], i)
			if why != skipNone {
				s.m.skipped[why].Inc()
				return
			}
			s.m.encoded.Inc()
			js = s.frames.Copy(s.jbuf)
			s.made += int64(js.Cap())
			jsMark = s.made
		}
		out, mark := js, jsMark
		if sub.compress {
			if zs == nil {
				s.zbuf = s.zenc.EncodeAll(js.Bytes(), s.zbuf[:0])
				s.m.compressed.Inc()
				zs = s.frames.Copy(s.zbuf)
				s.made += int64(zs.Cap())
				zsMark = s.made
			}
			out, mark = zs, zsMark
		}
		if f.maxMessageBytes > 0 && out.Len() > f.maxMessageBytes {
			continue
		}
		if !sub.enqueue(out, mark, s.made) {
			sub.dead = true
			s.anyDead = true
		}
	}
	if js != nil {
		js.Release()
	}
	if zs != nil {
		zs.Release()
	}
}

// sweepLocked marks dead the live subscribers holding back more than
// BacklogBytes of the stream. enqueue checks a subscriber only when it
// gets a message: one that stopped reading and then narrowed its filter
// to nothing would pin its queue forever. Called every BacklogBytes/16
// made, so the messages pinned stay within BacklogBytes, a sixteenth and
// the oldest message.
// REQUIRES: s.mu held, called by the pump.
func (s *Server) sweepLocked() {
	s.sweptAt = s.made
	for _, sub := range s.live {
		if !sub.dead && sub.behind(s.made) > int64(s.cfg.BacklogBytes) {
			sub.dead = true
			s.anyDead = true
		}
	}
}

// backlog returns the bytes of the stream the furthest-behind live
// subscriber holds back (relay_jetstream_backlog_bytes).
func (s *Server) backlog() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var most int64
	for _, sub := range s.live {
		most = max(most, sub.behind(s.made))
	}
	return most
}

// dropDeadLocked removes the subscribers marked dead from the live set and
// stops them as too slow (stop does not block). REQUIRES: s.mu held.
func (s *Server) dropDeadLocked() {
	j := 0
	for _, sub := range s.live {
		if sub.dead {
			sub.stop(causeTooSlow)
			continue
		}
		s.live[j] = sub
		j++
	}
	clear(s.live[j:])
	s.live = s.live[:j]
	s.anyDead = false
}

// goLiveLocked adds sub to the live set: from now on the pump queues every
// wanted event with seq > after and stamp ≥ minTime. REQUIRES: s.mu held.
func (s *Server) goLiveLocked(sub *subscriber, after uint64, minTime int64) {
	sub.after, sub.minTime = after, minTime
	s.live = append(s.live, sub)
}

// removeLive takes sub out of the live set, if it is there.
func (s *Server) removeLive(sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.all, sub)
	for i, x := range s.live {
		if x == sub {
			last := len(s.live) - 1
			copy(s.live[i:], s.live[i+1:])
			s.live[last] = nil
			s.live = s.live[:last]
			return
		}
	}
}

// eventAt returns the first retained event with seq ≥ q: its seq and
// commit time; false when there is none.
func (s *Server) eventAt(q uint64) (seq uint64, unixMilli int64, ok bool, err error) {
	err = s.src.ReplayTimed(s.ctx, q-1, func(sq uint64, ms int64, _ []byte) error {
		seq, unixMilli, ok = sq, ms, true
		return errStopScan
	})
	if errors.Is(err, errStopScan) {
		err = nil
	}
	return seq, unixMilli, ok, err
}

// secondStart returns where stamping must start to stamp event q as the
// pump does: the first event of q's commit second, or the oldest retained
// event when retention has cut into that second.
func (s *Server) secondStart(q uint64) (uint64, error) {
	seq, ms, ok, err := s.eventAt(max(q, 1))
	if err != nil || !ok {
		return max(q, 1), err
	}
	c, ok, err := s.src.SeqAtTime(time.Unix(floorDiv(ms, 1000), 0))
	if err != nil {
		return 0, err
	}
	oldest, _ := s.src.OldestSeq()
	if !ok || c > seq || c < oldest {
		// The second's index entry went with retention.
		return max(oldest, 1), nil
	}
	return c, nil
}

// timeStart returns where a replay for time cursor t (µs) starts stamping:
// the first event of t's second, the first event after it, or the newest
// event's second when nothing was committed since t's second began. exact
// is false when the start is the oldest retained event because t is before
// the window or in a second retention has cut into: that second's stamps
// may then come out lower than they went live, so the replay must send it
// whole rather than filter it by t.
func (s *Server) timeStart(t int64) (start uint64, exact bool, err error) {
	sec := floorDiv(t, 1e6)
	c, ok, err := s.src.SeqAtTime(time.Unix(sec, 0))
	if err != nil {
		return 0, false, err
	}
	oldest, any := s.src.OldestSeq()
	if !any {
		return 1, true, nil
	}
	if !ok {
		newest, _ := s.src.NewestSeq()
		start, err := s.secondStart(newest)
		return start, start != oldest, err
	}
	if c < oldest {
		return oldest, false, nil
	}
	if c == oldest {
		// c is a second's true first event; t may be before it.
		return oldest, true, nil
	}
	// If the event before c is already in t's second, that second's
	// index entry was dropped by retention: the events of t's second that
	// remain start at the oldest.
	prev, ms, ok, err := s.eventAt(c - 1)
	if err != nil {
		return 0, false, err
	}
	if ok && prev < c && floorDiv(ms, 1000) >= sec {
		return oldest, false, nil
	}
	return c, true, nil
}

// seqStart returns where a replay of the events after relay seq a starts
// stamping.
func (s *Server) seqStart(a uint64) (uint64, error) {
	oldest, ok := s.src.OldestSeq()
	if !ok {
		return 1, nil
	}
	if a+1 <= oldest {
		return oldest, nil
	}
	return s.secondStart(a + 1)
}

// Close disconnects every subscriber (with a close frame where the socket
// still takes one), stops the pump and waits for all of their goroutines.
// Later requests get HTTP 503. Close is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	subs := make([]*subscriber, 0, len(s.all))
	for sub := range s.all {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	// Stop the subscribers before cancelling the server's context (their
	// parent), so each records server_closed rather than the error its
	// cancelled read or write returns.
	for _, sub := range subs {
		sub.stop(causeServerClosed)
	}
	s.cancel()
	s.wg.Wait()
	<-s.pumpDone
	_ = s.zenc.Close()
}

// Cursor thresholds: Jetstream reads a cursor below 1e15 as a sequence
// number and one at or above it as a time_us (unix microseconds; 1e15 µs
// is September 2001).
const timeCursorMin = 1_000_000_000_000_000

// cursorKind says how a subscriber asked to start.
type cursorKind uint8

const (
	cursorNone cursorKind = iota // live
	cursorSeq                    // after a relay seq
	cursorTime                   // from a time_us
)

// parseCursor reads the cursor query parameter: absent or empty is live;
// below 1e15 a relay seq (negative counts as 0: from the oldest event); at
// or above it a time_us.
func parseCursor(v string) (cursorKind, int64, error) {
	if v == "" {
		return cursorNone, 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, 0, err
	}
	if n < timeCursorMin {
		return cursorSeq, max(n, 0), nil
	}
	return cursorTime, n, nil
}

// ServeHTTP serves GET /subscribe (Jetstream v1): it checks the query,
// takes a connection slot (HTTP 503 when MaxSubscribers are connected, 429
// when MaxSubscribersPerIP are connected from this client), upgrades to a
// WebSocket and runs the subscriber in this goroutine until it
// disconnects. Query parameters: wantedCollections and wantedDids
// (repeated), cursor, compress=true (or a Socket-Encoding header naming
// zstd), maxMessageSizeBytes, requireHello=true. Bad options get HTTP 400
// with a plain-text reason, as from Jetstream.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Server", s.server)
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		s.m.badRequests.Inc()
		http.Error(w, "subscribe is a GET WebSocket endpoint", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	f, err := newFilter(q["wantedCollections"], q["wantedDids"], parseMaxMessageBytes(q.Get("maxMessageSizeBytes")))
	if err != nil {
		s.m.badRequests.Inc()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	kind, cur, err := parseCursor(q.Get("cursor"))
	if err != nil {
		s.m.badRequests.Inc()
		http.Error(w, "invalid cursor: "+truncate(q.Get("cursor"), 64), http.StatusBadRequest)
		return
	}
	compress := strings.Contains(r.Header.Get("Socket-Encoding"), "zstd") || q.Get("compress") == "true"
	requireHello := q.Get("requireHello") == "true"
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		s.m.badRequests.Inc()
		http.Error(w, "subscribe requires a WebSocket upgrade", http.StatusUpgradeRequired)
		return
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		http.Error(w, "relay is shutting down", http.StatusServiceUnavailable)
		return
	}
	key := clientip.Key(s.clients.Addr(r))
	switch s.adm.Acquire(key, s.cfg.MaxSubscribers, s.cfg.MaxSubscribersPerIP) {
	case clientip.RefuseGlobal:
		s.m.rejected.Inc()
		w.Header().Set("Retry-After", clientip.RefusedRetryAfter)
		http.Error(w, "too many subscribers", http.StatusServiceUnavailable)
		return
	case clientip.RefusePerIP:
		s.m.refused[clientip.RefusePerIP].Inc()
		w.Header().Set("Retry-After", clientip.RefusedRetryAfter)
		http.Error(w, "too many subscribers from this address", http.StatusTooManyRequests)
		return
	}
	// The subscriber runs in this goroutine: its slot is free once it has
	// left the server's sets.
	defer s.adm.Release(key)
	conn, rw, _, err := s.upgrader.Upgrade(r, w)
	if err != nil {
		// The upgrader has written the HTTP error response.
		s.m.badRequests.Inc()
		if conn != nil {
			_ = conn.Close()
		}
		return
	}
	sub := newSubscriber(s, conn, compress)
	sub.filter.Store(f)
	sub.userAgent = r.UserAgent()
	if !s.register(sub) {
		_ = conn.Close()
		return
	}
	s.m.connects.Inc()
	s.cfg.Logger.Debug("jetstream subscriber connected", "remote", sub.remote,
		"userAgent", sub.userAgent, "cursor", q.Get("cursor"), "compress", compress, "requireHello", requireHello)
	go sub.readLoop(rw.Reader)
	sub.serve(kind, cur, requireHello)
}

// register adds sub to the set of connected subscribers and accounts for
// its two goroutines; false when the server is closed. Its connection
// slot bounds the set.
func (s *Server) register(sub *subscriber) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.all[sub] = struct{}{}
	s.wg.Add(2)
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
