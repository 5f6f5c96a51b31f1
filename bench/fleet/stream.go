package fleet

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gobwas/ws"

	"github.com/atrelay/relay/bench/wsconn"
	"github.com/atrelay/relay/engine/atproto/event"
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
	s := &stream{h: h, c: wsconn.New(conn, 32<<10)}
	defer func() {
		h.mu.Lock()
		delete(h.mu.conns, conn)
		h.mu.Unlock()
		h.open.Add(-1)
		conn.Close()
	}()
	if future {
		s.c.Refuse(futureCursorFrame)
		return
	}
	s.c.Serve(rw.Reader, func() {
		if outdated && s.c.WriteFrame(outdatedFrame, true) != nil {
			return
		}
		s.run(pos, joined)
	})
}

// stream is one subscribeRepos connection: run (the handler goroutine)
// writes events while the connection answers pings (wsconn.Conn.Serve).
type stream struct {
	h *Host        // static
	c *wsconn.Conn // static
}

// run sends entries from position pos on. Live-only entries before joined
// were added before the connection and are skipped.
func (s *stream) run(pos, joined int64) {
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
			s.c.WriteFrame(tooSlowFrame, true)
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
			case <-s.c.Done():
				return
			}
			continue
		}
		for _, e := range batch {
			if e.flags&flagDisconnect != 0 {
				s.c.Close() // abrupt: no close frame
				return
			}
			var err error
			if e.flags&flagSlow != 0 {
				err = s.c.WriteTrickle(e.frame, slowChunks, slowPause)
			} else {
				err = s.c.WriteFrame(e.frame, false)
			}
			if err != nil {
				return
			}
			s.h.framesSent.Add(1)
		}
		if s.c.Flush() != nil {
			return
		}
	}
}
