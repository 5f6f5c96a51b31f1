package replay

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/gobwas/ws"

	"github.com/atrelay/relay/bench/wsconn"
)

// futureCursorFrame is the error frame sent to a cursor beyond the head,
// encoded once: header {op: -1}, body {error, message} in canonical order.
const futureCursorFrame = "\xa1\x62op\x20" +
	"\xa2\x65error\x6cFutureCursor" +
	"\x67message\x78\x1fcursor is beyond the latest seq"

func (h *host) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/xrpc/com.atproto.sync.subscribeRepos", h.subscribe)
	describe, _ := json.Marshal(map[string]any{"did": h.r.opts.ServiceDID, "availableUserDomains": []string{}})
	mux.HandleFunc("/xrpc/com.atproto.server.describeServer", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, describe)
	})
	mux.HandleFunc("/xrpc/_health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, []byte(`{"error":"MethodNotImplemented","message":"not served by the replay host"}`))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(body)
}

// subscribe serves com.atproto.sync.subscribeRepos with the cursor
// semantics of spec §9.3: no cursor = live from now; cursor = frames with
// seq > cursor, then live; cursor beyond the head = FutureCursor and close.
func (h *host) subscribe(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet {
		writeJSON(w, http.StatusMethodNotAllowed, []byte(`{"error":"InvalidRequest","message":"GET only"}`))
		return
	}
	head := int(h.published.Load())
	start := head
	future := false
	if s := req.URL.Query().Get("cursor"); s != "" || req.URL.Query().Has("cursor") {
		cur, err := strconv.ParseInt(s, 10, 64)
		if err != nil || cur < 0 {
			writeJSON(w, http.StatusBadRequest, []byte(`{"error":"InvalidRequest","message":"cursor must be a non-negative integer"}`))
			return
		}
		var headSeq int64
		if head > 0 {
			headSeq = h.f.seqs[head-1]
		}
		future = cur > headSeq
		start = h.f.startAfter(cur, head)
	}
	conn, rw, _, err := ws.HTTPUpgrader{}.Upgrade(req, w)
	if err != nil {
		return // the upgrader has answered
	}
	if !h.track(conn) {
		conn.Close()
		return
	}
	defer h.untrack(conn)
	h.conns.Add(1)
	h.open.Add(1)
	defer h.open.Add(-1)

	s := &session{h: h, c: wsconn.New(conn, 64<<10)}
	defer conn.Close()
	if future {
		s.c.Refuse([]byte(futureCursorFrame))
		return
	}
	s.c.Serve(rw.Reader, func() { s.stream(start) })
}

// session is one subscribeRepos connection: stream (the handler goroutine)
// writes frames while the connection answers pings (wsconn.Conn.Serve).
type session struct {
	h *host        // static
	c *wsconn.Conn // static
}

// stream sends frames from index start on, then waits for more until the
// session or the host ends.
func (s *session) stream(start int) {
	cur, err := newCursor(s.h.f)
	if err != nil {
		return
	}
	defer cur.close()
	if err := cur.seek(start); err != nil {
		return
	}
	pos := start
	for {
		wake := s.h.waitCh()
		head := int(s.h.published.Load())
		if pos < head {
			n, err := s.send(cur, pos, head)
			pos += n
			if err != nil {
				return
			}
			continue
		}
		select {
		case <-wake:
		case <-s.c.Done():
			return
		case <-s.h.r.closing:
			return
		}
	}
}

// send writes frames [pos, head) and flushes. It returns how many it wrote.
func (s *session) send(cur *cursor, pos, head int) (int, error) {
	var frames, bytes int64
	defer func() {
		s.h.framesSent.Add(frames)
		s.h.bytesSent.Add(bytes)
	}()
	for i := pos; i < head; i++ {
		f, err := cur.frame()
		if err != nil {
			return int(frames), err
		}
		if err := s.c.WriteFrame(f, false); err != nil {
			return int(frames), err
		}
		frames++
		bytes += int64(len(f))
		if frames%256 == 0 {
			select {
			case <-s.c.Done():
				return int(frames), io.ErrClosedPipe
			default:
			}
		}
	}
	return int(frames), s.c.Flush()
}
