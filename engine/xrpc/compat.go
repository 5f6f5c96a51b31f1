package xrpc

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/atrelay/relay/engine/httpjson"
)

// PublicConfig configures Server.Public: what the public listener serves
// beyond the XRPC routes, so that it answers like the reference relay's.
type PublicConfig struct {
	// Software names the relay in the Server header of every response,
	// which reads "<Software> (atproto-relay)", as the firehose's upgrade
	// answer does (firehose.Config.Software). Default "relay".
	Software string
	// Admin, if set, is served under /admin/ on the public listener: the
	// reference relay's layout, where its admin UI and goat expect it.
	// The handler authenticates every request itself (admin.Server).
	Admin http.Handler
}

// bannerTail is the part of the GET / answer after the software line.
const bannerTail = `

The firehose WebSocket path is at:  /xrpc/com.atproto.sync.subscribeRepos
Hosts, repos and their status:       /xrpc/com.atproto.sync.listHosts, /xrpc/com.atproto.sync.listRepos
`

// publicHandler is the handler Public returns. Immutable; safe for
// concurrent use.
type publicHandler struct {
	s       *Server
	cfg     PublicConfig
	server  string // Server header value
	banner  []byte
	healthy []byte
}

// Public returns the handler for the public listener: the XRPC routes of
// s plus the reference relay's extras, GET / (a plain-text banner naming
// the firehose path), GET /_health ({"status":"ok"}, or 500
// {"status":"error","msg":...} when the engine reports a failure) and,
// if configured, the admin API under /admin/. Every response carries the
// Server header. CORS preflights are answered for every path, /admin/
// included, as the reference does for its admin UI.
func (s *Server) Public(cfg PublicConfig) http.Handler {
	if cfg.Software == "" {
		cfg.Software = "relay"
	}
	banner := "\nThis is an atproto [https://atproto.com] relay instance, running " + cfg.Software + "." + bannerTail
	return &publicHandler{
		s: s, cfg: cfg, server: cfg.Software + " (atproto-relay)", banner: []byte(banner),
		healthy: []byte(`{"status":"ok"}` + "\n"),
	}
}

// ServeHTTP sets the Server header and the client address, then routes.
func (p *publicHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Server", p.server)
	// Behind a trusted reverse proxy (Config.TrustedProxies) every handler
	// below, the admin API's consumer list included, sees the client the
	// proxy named instead of the proxy.
	if addr := p.s.clients.Addr(r); addr.IsValid() && addr.String() != peerHost(r.RemoteAddr) {
		r.RemoteAddr = net.JoinHostPort(addr.String(), "0")
	}
	path := r.URL.Path
	switch {
	case r.Method == http.MethodOptions:
		p.s.ServeHTTP(w, r)
	case path == "/":
		p.home(w, r)
	case path == "/_health":
		p.health(w, r)
	case p.cfg.Admin != nil && (path == "/admin" || strings.HasPrefix(path, "/admin/")):
		w.Header().Set("Access-Control-Allow-Origin", "*")
		p.cfg.Admin.ServeHTTP(w, r)
	default:
		p.s.ServeHTTP(w, r)
	}
}

// getOnly answers 405 unless r is a GET or HEAD.
func getOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", http.MethodGet)
	httpjson.Error(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "use GET")
	return false
}

func (p *publicHandler) home(w http.ResponseWriter, r *http.Request) {
	if !getOnly(w, r) {
		return
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(p.banner)
	}
}

// rootHealthBody is the /_health failure answer: the reference relay
// names its message "msg" there.
type rootHealthBody struct {
	Status  string `json:"status"`
	Message string `json:"msg"`
}

func (p *publicHandler) health(w http.ResponseWriter, r *http.Request) {
	if !getOnly(w, r) {
		return
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if err := p.s.eng.Health(r.Context()); err != nil {
		// The reference answers 500 with a fixed message; the cause goes
		// to the log, not to whoever probes.
		p.s.log.Warn("xrpc: unhealthy", "err", err)
		httpjson.Write(w, http.StatusInternalServerError, rootHealthBody{Status: "error", Message: "relay cannot serve"})
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(p.healthy)
}

// peerHost is the host part of a RemoteAddr ("" when it has none).
func peerHost(remote string) string {
	h, _, err := net.SplitHostPort(remote)
	if err != nil {
		return ""
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().String()
	}
	return h
}
