package firehose

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/atrelay/relay/engine/clientip"
	"github.com/atrelay/relay/engine/httpjson"
)

// Errors of parseCursor.
var (
	// ErrCursorSyntax: the cursor is not a decimal integer.
	ErrCursorSyntax = errors.New("firehose: cursor is not an integer")
	// ErrCursorNegative: the cursor is a negative integer.
	ErrCursorNegative = errors.New("firehose: cursor is negative")
	// ErrCursorRange: the cursor does not fit in 64 bits.
	ErrCursorRange = errors.New("firehose: cursor out of range")
)

// parseCursor parses the cursor query parameter; an empty value means no
// cursor, like an absent one.
func parseCursor(s string) (cursor uint64, ok bool, err error) {
	if s == "" {
		return 0, false, nil
	}
	if s[0] == '-' {
		if _, err := strconv.ParseUint(s[1:], 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
			return 0, false, ErrCursorNegative
		}
		return 0, false, ErrCursorSyntax
	}
	n, err := strconv.ParseUint(s, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return 0, false, ErrCursorRange
	case err != nil:
		return 0, false, ErrCursorSyntax
	}
	return n, true, nil
}

// ServeHTTP serves GET /xrpc/com.atproto.sync.subscribeRepos: it checks the
// request and the cursor (HTTP errors as XRPC JSON), takes a connection
// slot (HTTP 503 when MaxConsumers are connected, 429 when
// MaxConsumersPerIP are connected from this client), upgrades to a
// WebSocket and starts the consumer's goroutines; it returns at once.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Server", h.server)
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		h.m.badRequests.Inc()
		httpjson.Error(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "subscribeRepos is a GET WebSocket endpoint")
		return
	}
	cursor, hasCursor, err := parseCursor(r.URL.Query().Get("cursor"))
	if err != nil {
		h.m.badRequests.Inc()
		httpjson.Error(w, http.StatusBadRequest, "InvalidRequest", "cursor must be a non-negative integer")
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		h.m.badRequests.Inc()
		httpjson.Error(w, http.StatusUpgradeRequired, "InvalidRequest", "subscribeRepos requires a WebSocket upgrade")
		return
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		httpjson.Error(w, http.StatusServiceUnavailable, "ServiceUnavailable", "relay is shutting down")
		return
	}
	key := clientip.Key(h.clients.Addr(r))
	switch why := h.adm.Acquire(key, h.cfg.MaxConsumers, h.cfg.MaxConsumersPerIP); why {
	case clientip.RefuseGlobal:
		h.m.refused[why].Inc()
		w.Header().Set("Retry-After", clientip.RefusedRetryAfter)
		httpjson.Error(w, http.StatusServiceUnavailable, "ServiceUnavailable", "too many consumers connected; try again later")
		return
	case clientip.RefusePerIP:
		h.m.refused[why].Inc()
		w.Header().Set("Retry-After", clientip.RefusedRetryAfter)
		httpjson.Error(w, http.StatusTooManyRequests, "RateLimitExceeded", "too many consumers connected from this address")
		return
	}
	conn, rw, _, err := h.upgrader.Upgrade(r, w)
	if err != nil {
		// The upgrader has written the HTTP error response.
		h.adm.Release(key)
		h.m.badRequests.Inc()
		if conn != nil {
			_ = conn.Close()
		}
		return
	}
	if n := h.cfg.SocketSendBufferBytes; n > 0 {
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetWriteBuffer(n)
		}
	}
	c := newConsumer(h, conn)
	c.userAgent = r.UserAgent()
	c.cursor, c.hasCursor = cursor, hasCursor
	c.key = key
	if !h.register(c) {
		h.adm.Release(key)
		_ = conn.Close()
		return
	}
	h.m.connects.Inc()
	h.cfg.Logger.Debug("firehose consumer connected", "remote", c.remote, "cursor", r.URL.Query().Get("cursor"))
	br := rw.Reader
	if br.Buffered() == 0 {
		// Nothing the client sent is in net/http's 4 KiB read buffer yet:
		// a small one serves the reader (headers of at most 14
		// bytes, control payloads of at most 125) and the big one is freed.
		br = bufio.NewReaderSize(conn, readerBufferBytes)
	}
	go c.readLoop(br)
	go c.serve()
}

// readerBufferBytes sizes a consumer's read buffer: client frames are
// discarded, so it only needs to hold a frame header or a control payload.
const readerBufferBytes = 256
