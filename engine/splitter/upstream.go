package splitter

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gobwas/ws"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/upstream"
	"github.com/atrelay/relay/pool"
	"github.com/atrelay/relay/store"
)

// handshakeReadBufferBytes is the buffer gobwas/ws reads the upgrade
// response through; it is also the most the upgrade reads past the head.
const handshakeReadBufferBytes = 4 << 10

// errHandshakeTooLarge: the upgrade response head broke MaxHandshakeBytes or
// MaxHandshakeHeaders.
var errHandshakeTooLarge = errors.New("splitter: upstream handshake response too large")

// reader is the reader goroutine's state; every field is owned by it.
type reader struct {
	s *Splitter
	// last is the newest seq handed to the queue (so durable, or about to
	// be unless the store fails and the splitter stops); it is the cursor
	// of the next dial. hasLast is false only while the log was always
	// empty.
	last    uint64
	hasLast bool

	// Per connection.
	conn       net.Conn
	br         *bufio.Reader
	sentCursor bool // this connection was dialed with a cursor
	firstEvent bool // no event frame has arrived on it yet
	delivered  bool // it delivered at least one frame to the queue

	hdr  [ws.MaxHeaderSize - 2]byte
	ctl  [125]byte
	out  []byte // control frame being written
	peek event.Peeked
}

// readLoop is the reader goroutine: dial, read until the connection ends,
// back off, redial from the newest queued seq, until the splitter stops.
func (s *Splitter) readLoop() {
	defer s.wg.Done()
	r := &reader{s: s, br: bufio.NewReaderSize(nil, s.cfg.ReadBufferBytes), out: make([]byte, 0, ws.MaxHeaderSize+125)}
	if n := uint64(s.st.NewestSeq()); n > 0 {
		r.last, r.hasLast = n, true
	}
	failures := 0
	for s.ctx.Err() == nil {
		why, delivered := r.session()
		if s.ctx.Err() != nil {
			return
		}
		if why != reasonNone {
			s.m.disconnects[why].Inc()
		}
		if delivered && !why.penalized() {
			failures = 0
		}
		failures++
		t := time.NewTimer(s.backoff(failures))
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
	}
}

// backoff is the delay before attempt number n (n ≥ 1) of a run of
// failures: BackoffMin doubling up to BackoffMax, jittered down to half.
func (s *Splitter) backoff(n int) time.Duration {
	d := s.cfg.BackoffMax
	if n < 32 {
		d = min(s.cfg.BackoffMin<<(n-1), s.cfg.BackoffMax)
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// session runs one connection from dial to end and reports why it ended
// and whether it delivered anything.
func (r *reader) session() (reason, bool) {
	s := r.s
	s.m.dials.Inc()
	conn, raw, pending, why, err := s.dial(r.last, r.hasLast || s.cfg.Backfill)
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Warn("splitter: upstream dial failed", "upstream", s.ep.host, "reason", why.String(),
				"err", upstream.LogString([]byte(err.Error())))
		}
		return why, false
	}
	// Close breaks a blocked read or write at once.
	stop := context.AfterFunc(s.ctx, func() { _ = raw.Close() })
	defer func() {
		stop()
		_ = conn.Close()
		s.setConnected(false)
	}()
	s.setConnected(true)
	r.conn, r.sentCursor, r.firstEvent, r.delivered = conn, r.hasLast || s.cfg.Backfill, true, false
	var src io.Reader = conn
	if len(pending) > 0 {
		// Frames that arrived with the 101 response come first.
		src = io.MultiReader(bytes.NewReader(pending), conn)
	}
	r.br.Reset(src)
	defer r.br.Reset(nil)
	s.log.Info("splitter: upstream connected", "upstream", s.ep.host, "cursor", r.cursorText())
	why, err = r.readFrames()
	if s.ctx.Err() == nil {
		s.log.Info("splitter: upstream disconnected", "upstream", s.ep.host, "reason", why.String(),
			"err", errText(err), "last_seq", r.last)
	}
	return why, r.delivered
}

func (r *reader) cursorText() string {
	switch {
	case r.hasLast:
		return strconv.FormatUint(r.last, 10)
	case r.s.cfg.Backfill:
		return "0"
	}
	return "none (live)"
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return upstream.LogString([]byte(err.Error()))
}

// headLimiter fails the handshake once more than max bytes were read
// through it, bounding what a hostile upgrade response can make gobwas/ws
// buffer (it grows a header line without limit); after the handshake it
// passes reads through. Used by one goroutine.
type headLimiter struct {
	net.Conn
	max  int  // head bytes allowed plus one read-ahead buffer
	n    int  // bytes read so far
	done bool // the handshake is over
}

func (l *headLimiter) Read(p []byte) (int, error) {
	if l.done {
		return l.Conn.Read(p)
	}
	if left := l.max - l.n + 1; len(p) > left {
		p = p[:left]
	}
	n, err := l.Conn.Read(p)
	if l.n += n; l.n > l.max {
		return 0, errHandshakeTooLarge
	}
	return n, err
}

// dial connects and upgrades, with cursor when hasCursor. It returns the
// connection to use, the raw socket (closing it breaks any blocked I/O),
// the bytes that arrived behind the 101 response, and on failure the
// reason and error.
func (s *Splitter) dial(cursor uint64, hasCursor bool) (conn, raw net.Conn, pending []byte, why reason, err error) {
	u := *s.ep.stream
	if hasCursor {
		u.RawQuery = "cursor=" + strconv.FormatUint(cursor, 10)
	}
	lim := &headLimiter{max: s.cfg.MaxHandshakeBytes + handshakeReadBufferBytes}
	headers := 0
	d := ws.Dialer{
		Timeout:        s.cfg.HandshakeTimeout,
		ReadBufferSize: handshakeReadBufferBytes,
		Header:         ws.HandshakeHeaderHTTP(http.Header{"User-Agent": []string{s.cfg.UserAgent}}),
		TLSConfig:      s.tlsConfig(),
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{Timeout: s.cfg.DialTimeout}).DialContext(ctx, network, addr)
			raw = c
			return c, err
		},
		WrapConn: func(c net.Conn) net.Conn {
			lim.Conn = c
			return lim
		},
		OnHeader: func(_, _ []byte) error {
			if headers++; headers > s.cfg.MaxHandshakeHeaders {
				return errHandshakeTooLarge
			}
			return nil
		},
	}
	c, br, _, err := d.Dial(s.ctx, u.String())
	if err != nil {
		switch {
		case errors.Is(err, errHandshakeTooLarge):
			why = reasonHandshakeTooLarge
		case raw == nil:
			why = reasonDial
		default:
			// TLS, the upgrade request or a non-101 answer (ws.StatusError).
			why = reasonHandshake
		}
		if raw != nil {
			_ = raw.Close()
		}
		return nil, nil, nil, why, err
	}
	lim.done = true
	if br != nil {
		pending = make([]byte, br.Buffered())
		_, _ = io.ReadFull(br, pending)
		ws.PutReader(br)
	}
	return c, raw, pending, reasonNone, nil
}

func (s *Splitter) tlsConfig() *tls.Config {
	if s.cfg.TLSConfig != nil {
		return s.cfg.TLSConfig
	}
	return &tls.Config{MinVersion: tls.VersionTLS12}
}

// isTimeout reports whether err is a deadline expiry.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readErr maps a read error to its reason.
func readErr(err error) reason {
	switch {
	case isTimeout(err):
		return reasonTimeout
	case errors.Is(err, ws.ErrHeaderLengthMSB), errors.Is(err, ws.ErrHeaderLengthUnexpected):
		return reasonProtocol
	}
	return reasonRead
}

// readFrames reads messages until the connection ends. Between messages
// the read deadline is the idle time (IdlePing, then PongTimeout after our
// ping); once a message's first byte is in, the whole message must arrive
// within MessageTimeout.
func (r *reader) readFrames() (reason, error) {
	s := r.s
	state := ws.StateClientSide
	pinged := false
	var msg *pool.Frame // the message being assembled; owned here
	defer func() {
		if msg != nil {
			msg.Release()
		}
	}()
	var msgDeadline time.Time
	for {
		if msg == nil {
			idle := s.cfg.IdlePing
			if pinged {
				idle = s.cfg.PongTimeout
			}
			if err := r.conn.SetReadDeadline(time.Now().Add(idle)); err != nil {
				return reasonRead, err
			}
			if _, err := r.br.Peek(1); err != nil {
				if isTimeout(err) && !pinged && s.ctx.Err() == nil {
					if err := r.writeControl(ws.OpPing, nil); err != nil {
						return reasonTimeout, err
					}
					pinged = true
					continue
				}
				return readErr(err), err
			}
			pinged = false
			msgDeadline = time.Now().Add(s.cfg.MessageTimeout)
			if err := r.conn.SetReadDeadline(msgDeadline); err != nil {
				return reasonRead, err
			}
		}
		h, err := ws.ReadHeaderBuffer(r.br, r.hdr[:])
		if err != nil {
			return readErr(err), err
		}
		if err := ws.CheckHeader(h, state); err != nil {
			return reasonProtocol, err
		}
		if h.OpCode.IsControl() {
			p := r.ctl[:h.Length]
			if _, err := io.ReadFull(r.br, p); err != nil {
				return readErr(err), err
			}
			switch h.OpCode {
			case ws.OpClose:
				// Echo the status code, as RFC 6455 §5.5.1 asks.
				_ = r.writeControl(ws.OpClose, p[:min(len(p), 2)])
				return reasonClosed, nil
			case ws.OpPing:
				if err := r.writeControl(ws.OpPong, p); err != nil {
					return reasonTimeout, err
				}
			}
			continue
		}
		if h.OpCode == ws.OpText {
			return reasonProtocol, errors.New("splitter: text frame on the firehose")
		}
		cur := 0
		if msg != nil {
			cur = msg.Len()
		}
		if h.Length > int64(s.cfg.MaxFrameBytes-cur) {
			return reasonOversize, errors.New("splitter: message above MaxFrameBytes")
		}
		n := cur + int(h.Length)
		switch {
		case msg == nil:
			msg = s.frames.Get(n)
		case cap(msg.Bytes()) < n:
			// A continuation frame: move to a buffer that holds both.
			bigger := s.frames.Get(n)
			bigger.Buffer().B = append(bigger.Buffer().B, msg.Bytes()...)
			msg.Release()
			msg = bigger
		}
		buf := msg.Buffer()
		buf.B = buf.B[:n]
		if _, err := io.ReadFull(r.br, buf.B[cur:]); err != nil {
			return readErr(err), err
		}
		if !h.Fin {
			state = state.Set(ws.StateFragmented)
			continue
		}
		state = state.Clear(ws.StateFragmented)
		f := msg
		msg = nil
		if why := r.handle(f); why != reasonNone {
			return why, nil
		}
	}
}

// writeControl writes one masked control frame (client frames are masked,
// RFC 6455 §5.3) under WriteTimeout.
func (r *reader) writeControl(op ws.OpCode, payload []byte) error {
	h := ws.Header{Fin: true, OpCode: op, Masked: true, Mask: ws.NewMask(), Length: int64(len(payload))}
	w := sliceWriter{b: r.out[:0]}
	if err := ws.WriteHeader(&w, h); err != nil {
		return err
	}
	start := len(w.b)
	w.b = append(w.b, payload...)
	ws.Cipher(w.b[start:], h.Mask, 0)
	r.out = w.b
	if err := r.conn.SetWriteDeadline(time.Now().Add(r.s.cfg.WriteTimeout)); err != nil {
		return err
	}
	_, err := r.conn.Write(w.b)
	return err
}

// sliceWriter appends to b.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// handle judges one complete message, which it owns: an event frame with a
// seq above the newest goes to the queue unchanged, anything else is
// counted and released. A non-none reason ends the connection.
func (r *reader) handle(f *pool.Frame) reason {
	s := r.s
	p := &r.peek
	if err := event.Peek(f.Bytes(), p); err != nil {
		s.m.dropped[dropMalformed].Inc()
		f.Release()
		return reasonNone
	}
	switch p.Kind {
	case event.KindCommit, event.KindSync, event.KindIdentity, event.KindAccount:
	case event.KindError:
		r.errorFrame(p.Name)
		f.Release()
		return reasonErrorFrame
	case event.KindInfo:
		r.infoFrame(p.Name)
		f.Release()
		return reasonNone
	default:
		s.m.dropped[dropUnknownType].Inc()
		f.Release()
		return reasonNone
	}
	first := r.firstEvent
	r.firstEvent = false
	if !p.HasSeq || p.Seq <= 0 {
		s.m.dropped[dropNoSeq].Inc()
		f.Release()
		return reasonNone
	}
	seq := uint64(p.Seq)
	s.seen.Store(seq)
	if r.hasLast && seq <= r.last {
		// Never store or serve a seq at or below one we have: the upstream
		// replays from before our cursor, or its seqs were reset.
		r.enterBehind(signalSeqBackwards, seq, first)
		s.m.dropped[dropSeqNotAbove].Inc()
		f.Release()
		return reasonNone
	}
	kind, ok := store.KindOf(p.Kind)
	if !ok || seq > uint64(store.MaxSeq) || len(p.DID) > store.MaxDIDBytes {
		s.m.dropped[dropInvalid].Inc()
		f.Release()
		return reasonNone
	}
	if r.hasLast && seq != r.last+1 {
		s.m.jumps.Inc()
		s.log.Debug("splitter: upstream seq jumped forward", "from", r.last, "to", seq)
	}
	if s.behind.Swap(false) {
		s.log.Info("splitter: upstream is past our newest seq again; following it", "upstream", s.ep.host,
			"our_newest", r.last, "seq", seq)
	}
	n := f.Len()
	if err := s.q.push(s.ctx, item{seq: seq, kind: kind, did: p.DID, frame: f}); err != nil {
		f.Release()
		return reasonNone // the splitter is stopping; the loop sees ctx
	}
	r.last, r.hasLast, r.delivered = seq, true, true
	s.m.frames.Inc()
	s.m.bytes.Add(n)
	return reasonNone
}

// enterBehind notes that the upstream is behind our newest seq. The first
// signal of an episode is counted and logged; the episode ends when a frame
// above our newest arrives.
func (r *reader) enterBehind(sig resetSignal, upstreamSeq uint64, first bool) {
	s := r.s
	if s.behind.Swap(true) {
		return
	}
	s.m.resets[sig].Inc()
	s.log.Error("splitter: upstream is behind our newest seq (its log was reset, or it lags); "+
		"serving our own log and following again once it passes our newest seq",
		"upstream", s.ep.host, "signal", signalNames[sig], "our_newest", r.last,
		"upstream_seq", upstreamSeq, "first_frame_of_connection", first)
}

// errorFrame handles an error frame from the upstream, which then ends the
// connection (penalized, so it backs off).
func (r *reader) errorFrame(name []byte) {
	s := r.s
	if string(name) == "FutureCursor" && r.sentCursor {
		r.enterBehind(signalFutureCursor, 0, true)
		return
	}
	s.log.Warn("splitter: upstream sent an error frame", "upstream", s.ep.host, "error", upstream.LogString(name))
}

// infoFrame handles an #info message.
func (r *reader) infoFrame(name []byte) {
	s := r.s
	if string(name) == "OutdatedCursor" && !r.hasLast {
		// A backfill (cursor 0) of a window that no longer starts at 1.
		s.log.Info("splitter: backfilling from the upstream's oldest retained event", "upstream", s.ep.host)
		return
	}
	if string(name) == "OutdatedCursor" {
		s.m.outdated.Inc()
		s.log.Warn("splitter: our cursor is older than the upstream's replay window; the events between "+
			"are lost here and consumers will see the seq jump", "upstream", s.ep.host, "cursor", r.last)
		return
	}
	s.log.Info("splitter: upstream sent #info", "upstream", s.ep.host, "name", upstream.LogString(name))
}
