package replay

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/gobwas/ws"
)

// futureCursorFrame is the error frame sent to a cursor beyond the head,
// encoded once: header {op: -1}, body {error, message} in canonical order.
const futureCursorFrame = "\xa1\x62op\x20" +
	"\xa2\x65error\x6cFutureCursor" +
	"\x67message\x78\x1fcursor is beyond the latest seq"

// maxClientFrame bounds what a client may send us; servers ignore client
// data (spec §9.1), so anything bigger is a misbehaving client.
const maxClientFrame = 1 << 16

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

	s := &session{h: h, conn: conn, bw: bufio.NewWriterSize(conn, 64<<10), done: make(chan struct{})}
	defer conn.Close()
	if future {
		s.writeFrame([]byte(futureCursorFrame))
		s.writeControl(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
		return
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		s.readControl(rw.Reader)
	}()
	s.stream(start)
	conn.Close()
	<-readerDone
}

// session is one subscribeRepos connection: a writer goroutine (stream)
// and a reader goroutine (readControl) that answers pings and closes.
type session struct {
	h    *host    // static
	conn net.Conn // static

	wmu sync.Mutex    // guards bw and hdr: both goroutines write
	bw  *bufio.Writer //
	hdr [ws.MaxHeaderSize]byte

	doneOnce sync.Once
	done     chan struct{} // closed when either side ends the session
}

func (s *session) finish() { s.doneOnce.Do(func() { close(s.done) }) }

// stream sends frames from index start on, then waits for more until the
// session or the host ends.
func (s *session) stream(start int) {
	defer s.finish()
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
		case <-s.done:
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
		if err := s.writeFrameNoFlush(f); err != nil {
			return int(frames), err
		}
		frames++
		bytes += int64(len(f))
		if frames%256 == 0 {
			select {
			case <-s.done:
				return int(frames), io.ErrClosedPipe
			default:
			}
		}
	}
	s.wmu.Lock()
	err := s.bw.Flush()
	s.wmu.Unlock()
	return int(frames), err
}

// writeFrameNoFlush writes one binary message, unmasked (server side).
func (s *session) writeFrameNoFlush(f []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	n := AppendFrameHeader(s.hdr[:0], ws.OpBinary, len(f))
	if _, err := s.bw.Write(n); err != nil {
		return err
	}
	_, err := s.bw.Write(f)
	return err
}

func (s *session) writeFrame(f []byte) error {
	if err := s.writeFrameNoFlush(f); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.bw.Flush()
}

func (s *session) writeControl(op ws.OpCode, payload []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.bw.Write(AppendFrameHeader(s.hdr[:0], op, len(payload))); err != nil {
		return err
	}
	if _, err := s.bw.Write(payload); err != nil {
		return err
	}
	return s.bw.Flush()
}

// AppendFrameHeader appends a final, unmasked WebSocket frame header (RFC
// 6455 §5.2), as a server sends it, without the allocation ws.WriteHeader
// makes. The synthetic fleet's hosts use it too.
func AppendFrameHeader(b []byte, op ws.OpCode, n int) []byte {
	b = append(b, 0x80|byte(op))
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}

// readControl answers pings and a close, ignores data (spec §9.1: servers
// ignore what clients send) and ends the session when the client leaves.
func (s *session) readControl(br *bufio.Reader) {
	defer s.finish()
	var scratch [ws.MaxHeaderSize - 2]byte
	payload := make([]byte, 125)
	for {
		h, err := ws.ReadHeaderBuffer(br, scratch[:])
		if err != nil {
			return
		}
		if h.OpCode.IsControl() {
			if h.Length > 125 || !h.Fin {
				return
			}
			p := payload[:h.Length]
			if _, err := io.ReadFull(br, p); err != nil {
				return
			}
			if h.Masked {
				ws.Cipher(p, h.Mask, 0)
			}
			switch h.OpCode {
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
			continue
		}
		if h.Length > maxClientFrame {
			return
		}
		if _, err := io.CopyN(io.Discard, br, h.Length); err != nil {
			return
		}
	}
}
