package fleet

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/atrelay/relay/bench/replay"
	"github.com/atrelay/relay/engine/event"
	"github.com/atrelay/relay/engine/httpjson"
)

// Pre-encoded frames (constant output is encoded once).
var (
	futureCursorFrame = event.AppendError(nil, &event.ErrorFrame{
		Error: []byte("FutureCursor"), Message: []byte("cursor is beyond the latest seq")})
	tooSlowFrame = event.AppendError(nil, &event.ErrorFrame{
		Error: []byte("ConsumerTooSlow"), Message: []byte("subscriber fell out of the host's history")})
	outdatedFrame = event.AppendInfo(nil, &event.Info{
		Name: []byte("OutdatedCursor"), Message: []byte("cursor is older than the host's history")})
)

// slowChunks and slowPause shape a slow write: the frame goes out in this
// many pieces with a pause after each.
const (
	slowChunks = 8
	slowPause  = 5 * time.Millisecond
)

// maxClientFrame bounds what a client may send; servers ignore client data
// (spec §9.1), so anything bigger ends the connection.
const maxClientFrame = 1 << 16

// subscribe serves com.atproto.sync.subscribeRepos with the cursor rules of
// spec §9.3: no cursor = live only; cursor ≤ head = events with seq >
// cursor, then live; cursor older than the history = #info OutdatedCursor,
// then the whole history; cursor > head = FutureCursor and close;
// negative or non-integer = HTTP 400.
func (h *Host) subscribe(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet {
		httpjson.Error(w, http.StatusMethodNotAllowed, "InvalidRequest", "GET only")
		return
	}
	q := req.URL.Query()
	hasCursor := q.Has("cursor")
	var cursor int64
	if hasCursor {
		c, err := strconv.ParseInt(q.Get("cursor"), 10, 64)
		if err != nil || c < 0 {
			httpjson.Error(w, http.StatusBadRequest, "InvalidRequest", "cursor must be a non-negative integer")
			return
		}
		cursor = c
	}
	conn, rw, _, err := ws.HTTPUpgrader{}.Upgrade(req, w)
	if err != nil {
		return // the upgrader has answered
	}
	h.mu.Lock()
	if h.mu.closed {
		h.mu.Unlock()
		conn.Close()
		return
	}
	h.mu.conns[conn] = struct{}{}
	joined := h.mu.hist.end() // live-only entries before this are not ours
	pos, future, outdated := joined, false, false
	if hasCursor {
		if cursor > h.mu.seq {
			future = true
		} else {
			pos, outdated = h.mu.hist.after(cursor)
		}
	}
	h.mu.Unlock()
	h.connections.Add(1)
	h.open.Add(1)
	s := &stream{h: h, conn: conn, bw: bufio.NewWriterSize(conn, 32<<10), done: make(chan struct{})}
	defer func() {
		h.mu.Lock()
		delete(h.mu.conns, conn)
		h.mu.Unlock()
		h.open.Add(-1)
		conn.Close()
	}()
	if future {
		s.writeFrame(futureCursorFrame, false)
		s.writeControl(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
		return
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		s.readControl(rw.Reader)
	}()
	if outdated && s.writeFrame(outdatedFrame, true) != nil {
		conn.Close()
		<-readerDone
		return
	}
	s.run(pos, joined)
	conn.Close()
	<-readerDone
}

// stream is one subscribeRepos connection: run (the handler goroutine)
// writes events, readControl (its own goroutine) answers pings.
type stream struct {
	h    *Host    // static
	conn net.Conn // static

	wmu sync.Mutex    // guards bw and hdr: both goroutines write
	bw  *bufio.Writer //
	hdr [ws.MaxHeaderSize]byte

	doneOnce sync.Once
	done     chan struct{} // closed when either side ends the stream
}

func (s *stream) finish() { s.doneOnce.Do(func() { close(s.done) }) }

// run sends entries from position pos on. Live-only entries before joined
// were added before the connection and are skipped.
func (s *stream) run(pos, joined int64) {
	defer s.finish()
	var batch []entry
	for {
		s.h.mu.Lock()
		wake := s.h.mu.wake
		if wake == nil { // host closed
			s.h.mu.Unlock()
			return
		}
		hist := &s.h.mu.hist
		if pos < hist.first {
			s.h.mu.Unlock()
			s.h.tooSlow.Add(1)
			s.writeFrame(tooSlowFrame, true)
			return
		}
		batch = batch[:0]
		for ; pos < hist.end() && len(batch) < 256; pos++ {
			e := hist.at(pos)
			if e.flags&flagLiveOnly != 0 && pos < joined {
				continue
			}
			batch = append(batch, *e)
		}
		s.h.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-wake:
			case <-s.done:
				return
			}
			continue
		}
		for _, e := range batch {
			if e.flags&flagDisconnect != 0 {
				s.conn.Close() // abrupt: no close frame
				return
			}
			var err error
			if e.flags&flagSlow != 0 {
				err = s.writeSlow(e.frame)
			} else {
				err = s.writeFrame(e.frame, false)
			}
			if err != nil {
				return
			}
			s.h.framesSent.Add(1)
		}
		s.wmu.Lock()
		err := s.bw.Flush()
		s.wmu.Unlock()
		if err != nil {
			return
		}
	}
}

// writeFrame writes one binary message, unmasked (server side).
func (s *stream) writeFrame(f []byte, flush bool) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.bw.Write(replay.AppendFrameHeader(s.hdr[:0], ws.OpBinary, len(f))); err != nil {
		return err
	}
	if _, err := s.bw.Write(f); err != nil {
		return err
	}
	if flush {
		return s.bw.Flush()
	}
	return nil
}

// writeSlow writes one message in slowChunks pieces, flushing and pausing
// after each, so the reader sees a frame trickle in.
func (s *stream) writeSlow(f []byte) error {
	msg := append(replay.AppendFrameHeader(nil, ws.OpBinary, len(f)), f...)
	step := (len(msg) + slowChunks - 1) / slowChunks
	for len(msg) > 0 {
		n := min(step, len(msg))
		s.wmu.Lock()
		_, err := s.bw.Write(msg[:n])
		if err == nil {
			err = s.bw.Flush()
		}
		s.wmu.Unlock()
		if err != nil {
			return err
		}
		msg = msg[n:]
		select {
		case <-time.After(slowPause):
		case <-s.done:
			return io.ErrClosedPipe
		}
	}
	return nil
}

func (s *stream) writeControl(op ws.OpCode, payload []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.bw.Write(replay.AppendFrameHeader(s.hdr[:0], op, len(payload))); err != nil {
		return err
	}
	if _, err := s.bw.Write(payload); err != nil {
		return err
	}
	return s.bw.Flush()
}

// readControl answers pings and a close, discards data frames and ends the
// stream when the client leaves.
func (s *stream) readControl(br *bufio.Reader) {
	defer s.finish()
	var payload [125]byte
	for {
		hd, err := ws.ReadHeader(br)
		if err != nil {
			return
		}
		if !hd.OpCode.IsControl() {
			if hd.Length > maxClientFrame {
				return
			}
			if _, err := io.CopyN(io.Discard, br, hd.Length); err != nil {
				return
			}
			continue
		}
		if hd.Length > 125 || !hd.Fin {
			return
		}
		p := payload[:hd.Length]
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		if hd.Masked {
			ws.Cipher(p, hd.Mask, 0)
		}
		switch hd.OpCode {
		case ws.OpPing:
			if s.writeControl(ws.OpPong, p) != nil {
				return
			}
		case ws.OpClose:
			code := p
			if len(code) > 2 {
				code = code[:2]
			}
			s.writeControl(ws.OpClose, code)
			return
		}
	}
}
