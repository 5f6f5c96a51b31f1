package splitter

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"

	"github.com/atrelay/relay/engine/httpjson"
)

// api is the splitter's public HTTP handler; static after newAPI, safe for
// concurrent use.
type api struct {
	s        *Splitter
	proxy    *httputil.ReverseProxy
	inFlight chan struct{} // one token per running pass-through request
	waiters  chan struct{} // one token per request waiting for a future cursor
	server   string        // Server header value
}

// Handler returns the public API: subscribeRepos from our own log (through
// the hub), /xrpc/_health and /_health from our own state, the other
// com.atproto.sync.* methods passed through to the upstream, and XRPC 404
// for anything else. See the package doc.
func (s *Splitter) Handler() http.Handler { return s.api }

// maxProxyResponseHeaderBytes bounds the upstream's response head.
const maxProxyResponseHeaderBytes = 64 << 10

func newAPI(s *Splitter) *api {
	a := &api{
		s:        s,
		inFlight: make(chan struct{}, s.cfg.ProxyMaxInFlight),
		waiters:  make(chan struct{}, s.cfg.MaxCursorWaiters),
		server:   s.cfg.Software + " (atproto-relay)",
	}
	target := s.ep.http
	a.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// The upstream's requestCrawl limits go by client address; it
			// reads the last X-Forwarded-For entry when it trusts us.
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			DialContext:            (&net.Dialer{Timeout: s.cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:        s.tlsConfig(),
			TLSHandshakeTimeout:    s.cfg.HandshakeTimeout,
			ResponseHeaderTimeout:  s.cfg.ProxyTimeout,
			MaxResponseHeaderBytes: maxProxyResponseHeaderBytes,
			MaxIdleConns:           64,
			MaxIdleConnsPerHost:    64,
			IdleConnTimeout:        90 * time.Second,
			ForceAttemptHTTP2:      true,
		},
		ModifyResponse: func(*http.Response) error {
			s.m.proxy[proxyOK].Inc()
			return nil
		},
		ErrorHandler: a.proxyError,
	}
	return a
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Server", a.server)
	path := r.URL.Path
	switch {
	case path == subscribePath:
		a.subscribe(w, r)
	case path == "/xrpc/_health" || path == "/_health":
		a.health(w, r)
	case path == "/":
		a.home(w, r)
	case isSyncMethod(path):
		a.pass(w, r)
	default:
		a.s.m.proxy[proxyRefused].Inc()
		httpjson.Error(w, http.StatusNotFound, "MethodNotImplemented", "no such method on this splitter")
	}
}

// subscribe serves subscribeRepos through the hub, first waiting up to
// FutureCursorWait for a cursor beyond our newest seq (see waitFor).
func (a *api) subscribe(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		if c, err := strconv.ParseUint(r.URL.Query().Get("cursor"), 10, 64); err == nil && c > uint64(a.s.st.NewestSeq()) {
			a.waitFor(r.Context(), c)
		}
	}
	a.s.hub.ServeHTTP(w, r)
}

// waitFor waits until the log holds cursor, FutureCursorWait passes, the
// client leaves or the splitter stops. Splitters behind one load balancer
// follow the same upstream a few milliseconds apart, so a consumer moving
// from one to another may name a seq the new one is about to store; without
// the wait it would get FutureCursor and a disconnect.
func (a *api) waitFor(ctx context.Context, cursor uint64) {
	s := a.s
	select {
	case a.waiters <- struct{}{}:
	default:
		s.m.waits[waitBusy].Inc()
		return
	}
	defer func() { <-a.waiters }()
	t := time.NewTimer(s.cfg.FutureCursorWait)
	defer t.Stop()
	for {
		// Take the channel before reading the seq: a batch landing in
		// between closes this very channel.
		next := s.advanced.wait()
		if uint64(s.st.NewestSeq()) >= cursor {
			s.m.waits[waitReached].Inc()
			return
		}
		select {
		case <-next:
		case <-t.C:
			s.m.waits[waitTimeout].Inc()
			return
		case <-ctx.Done():
			s.m.waits[waitGone].Inc()
			return
		case <-s.ctx.Done():
			s.m.waits[waitGone].Inc()
			return
		}
	}
}

// healthBody is the /xrpc/_health answer: the reference relay's shape
// (status, message) plus the splitter's view.
type healthBody struct {
	Status   string `json:"status"`
	Message  string `json:"message,omitempty"`
	Upstream string `json:"upstream"` // connected, disconnected or behind
	Seq      uint64 `json:"seq"`      // newest stored seq
}

func (a *api) health(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", http.MethodGet)
		httpjson.Error(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "use GET")
		return
	}
	st := a.s.Status()
	b := healthBody{Status: "ok", Upstream: "disconnected", Seq: st.NewestSeq}
	switch {
	case st.Connected && st.Behind:
		b.Upstream = "behind"
	case st.Connected:
		b.Upstream = "connected"
	}
	code := http.StatusOK
	if err := a.s.Health(); err != nil {
		code, b.Status, b.Message = http.StatusServiceUnavailable, "error", err.Error()
	}
	httpjson.Write(w, code, b)
}

const banner = "This is an atproto relay splitter: it serves com.atproto.sync.subscribeRepos with its upstream " +
	"relay's seqs and passes the other com.atproto.sync methods through.\n"

func (a *api) home(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write([]byte(banner))
	}
}

// isSyncMethod reports whether path is /xrpc/com.atproto.sync.<name> with
// a name of letters only, so nothing but an XRPC method of that namespace
// (no "..", no encoded slash) can reach the upstream.
func isSyncMethod(path string) bool {
	name, ok := strings.CutPrefix(path, "/xrpc/com.atproto.sync.")
	if !ok || name == "" || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// procedures are the POST methods passed through.
var procedures = map[string]bool{
	"/xrpc/com.atproto.sync.requestCrawl":   true,
	"/xrpc/com.atproto.sync.notifyOfUpdate": true,
}

// pass forwards one com.atproto.sync.* request to the upstream: queries
// (GET, HEAD, OPTIONS) and the requestCrawl procedure, with a bounded body,
// a deadline for the whole exchange and a bound on requests in flight.
func (a *api) pass(w http.ResponseWriter, r *http.Request) {
	s := a.s
	switch {
	case r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions:
		r.Body, r.ContentLength = http.NoBody, 0
	case r.Method == http.MethodPost && procedures[r.URL.Path]:
		if r.ContentLength > int64(s.cfg.ProxyMaxBodyBytes) {
			s.m.proxy[proxyTooLarge].Inc()
			httpjson.Error(w, http.StatusRequestEntityTooLarge, "InvalidRequest", "request body too large")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, int64(s.cfg.ProxyMaxBodyBytes))
	default:
		s.m.proxy[proxyRefused].Inc()
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		httpjson.Error(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method not passed through")
		return
	}
	select {
	case a.inFlight <- struct{}{}:
	default:
		s.m.proxy[proxyBusy].Inc()
		httpjson.Error(w, http.StatusServiceUnavailable, "ServiceUnavailable", "too many requests in flight")
		return
	}
	defer func() { <-a.inFlight }()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ProxyTimeout)
	defer cancel()
	// SetURL joins the escaped path when RawPath is set; the checked Path
	// is the one to send.
	r.URL.RawPath = ""
	// Our Server header is replaced by the upstream's.
	w.Header().Del("Server")
	a.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// proxyError answers a pass-through that got no response from the upstream.
func (a *api) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	s := a.s
	w.Header().Set("Server", a.server)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		s.m.proxy[proxyTooLarge].Inc()
		httpjson.Error(w, http.StatusRequestEntityTooLarge, "InvalidRequest", "request body too large")
		return
	}
	s.m.proxy[proxyFailed].Inc()
	s.log.Debug("splitter: pass-through failed", "path", r.URL.Path, "err", errText(err))
	httpjson.Error(w, http.StatusBadGateway, "UpstreamFailure", "the upstream relay did not answer")
}
