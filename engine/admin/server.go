package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/atrelay/relay/engine/httpjson"
	"github.com/atrelay/relay/store"
)

// Engine is what the admin API asks of the running relay. Hostnames and
// DIDs arrive trimmed but otherwise as the operator typed them; the engine
// normalizes hostnames (failing with xrpc.ErrBadHostname). Failures wrap
// ErrUnknownHost, ErrUnknownAccount or ErrNotConnected where those apply,
// or the xrpc crawl sentinels for AdminRequestCrawl; anything else is a 500.
type Engine interface {
	// UpstreamConns lists the hostnames with a live upstream connection.
	UpstreamConns() []string
	// KillUpstream drops the connection to hostname, banning it too if ban.
	KillUpstream(ctx context.Context, hostname string, ban bool) error
	// CrawlEnabled reports whether public requestCrawl is accepted.
	CrawlEnabled() bool
	// SetCrawlEnabled switches public requestCrawl on or off.
	SetCrawlEnabled(ctx context.Context, enabled bool) error
	// AdminRequestCrawl subscribes to hostname bypassing the public checks
	// (crawl switch, new-host limit, localhost rule).
	AdminRequestCrawl(ctx context.Context, hostname string) error
	// BanHost marks the host banned and drops its connection.
	BanHost(ctx context.Context, hostname string) error
	// UnbanHost makes a banned host active again.
	UnbanHost(ctx context.Context, hostname string) error
	// BanDomain bans a domain and its subdomains, dropping their connections.
	BanDomain(ctx context.Context, domain string) error
	// UnbanDomain lifts a domain ban.
	UnbanDomain(ctx context.Context, domain string) error
	// SetHostLimits applies the non-nil fields of l to the host.
	SetHostLimits(ctx context.Context, hostname string, l HostLimits) error
	// Takedown takes the account down locally and emits its #account.
	Takedown(ctx context.Context, did string) error
	// ReverseTakedown lifts a local takedown or suspension.
	ReverseTakedown(ctx context.Context, did string) error
	// ResetCursor forgets the host's upstream cursor and reconnects live.
	ResetCursor(ctx context.Context, hostname string) error
	// Resync fetches the account's repo from its PDS and emits a #sync.
	Resync(ctx context.Context, did string) error
	// Consumers lists the connected firehose consumers.
	Consumers() []Consumer
}

// Errors the Engine wraps; each maps to one answer.
var (
	// ErrUnknownHost: no such host in the store (404 HostNotFound).
	ErrUnknownHost = errors.New("admin: unknown host")
	// ErrUnknownAccount: no such account in the store (404 RepoNotFound).
	ErrUnknownAccount = errors.New("admin: unknown account")
	// ErrNotConnected: the host has no live connection (400 NotConnected).
	ErrNotConnected = errors.New("admin: no active connection to host")
)

// Errors of New.
var (
	// ErrNoToken: New was given an empty token; the API would be open.
	ErrNoToken = errors.New("admin: empty admin token")
	// ErrBadConfig: a required Config field is missing.
	ErrBadConfig = errors.New("admin: invalid config")
)

// HostLimits is a change of a host's limits; nil fields stay as they are.
// It is also the changeLimits request body (with "host").
type HostLimits struct {
	// AccountLimit is the number of accounts accepted from the host.
	AccountLimit *uint64 `json:"repo_limit,omitempty"`
	// Trusted hosts get the trusted rate limits (digest §14.4).
	Trusted *bool `json:"trusted,omitempty"`
	// PerSecond overrides the host's events-per-second limit.
	PerSecond *uint64 `json:"per_second,omitempty"`
}

// empty reports whether l changes nothing.
func (l HostLimits) empty() bool {
	return l.AccountLimit == nil && l.Trusted == nil && l.PerSecond == nil
}

// NewHostQuota is the part of an Engine behind the reference relay's
// subs/perDayLimit and subs/setPerDayLimit. It is optional: a Server whose
// Engine does not implement it answers those paths 501.
type NewHostQuota interface {
	// NewHostsPerDay is the bound on hosts public requestCrawl may add per
	// UTC day.
	NewHostsPerDay() int64
	// SetNewHostsPerDay changes that bound (n >= 0) until the next restart.
	SetNewHostsPerDay(ctx context.Context, n int64) error
}

// Config configures a Server. Store, Engine and at least one non-empty
// token (Token or Tokens) are required.
type Config struct {
	Store  *store.Store
	Engine Engine
	// Token is an admin secret (RELAY_ADMIN_PASSWORD).
	Token string
	// Tokens are more accepted secrets, all equally valid, so a secret can
	// be rotated without downtime (the reference relay's several
	// RELAY_ADMIN_PASSWORD values). Empty entries are ignored.
	Tokens []string
	Logger *slog.Logger
}

// Server is the admin API handler. Immutable after New; safe for
// concurrent use.
type Server struct {
	st     *store.Store
	eng    Engine
	quota  NewHostQuota // nil when eng does not implement it
	tokens [][sha256.Size]byte
	log    *slog.Logger
	mux    *http.ServeMux
}

// Environment variables holding the admin secrets, in the order the
// reference relay reads them: the first one set is used.
const (
	EnvAdminPassword = "RELAY_ADMIN_PASSWORD"
	EnvAdminKey      = "RELAY_ADMIN_KEY"
)

// ParseTokens splits a comma-separated list of admin secrets, as the
// reference relay reads RELAY_ADMIN_PASSWORD, dropping blanks.
func ParseTokens(list string) []string {
	var out []string
	for _, t := range strings.Split(list, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// EnvTokens returns the admin secrets from the environment (getenv is
// os.Getenv outside tests): RELAY_ADMIN_PASSWORD, or if it is unset or
// empty RELAY_ADMIN_KEY, each a comma-separated list.
func EnvTokens(getenv func(string) string) []string {
	if v := getenv(EnvAdminPassword); v != "" {
		return ParseTokens(v)
	}
	return ParseTokens(getenv(EnvAdminKey))
}

// route is one admin endpoint.
type route struct {
	method string
	path   string
	fn     func(s *Server, w http.ResponseWriter, r *http.Request)
}

// routeTable returns every admin route.
func routeTable() []route {
	return []route{
		{http.MethodGet, "/admin/subs/getUpstreamConns", (*Server).upstreamConns},
		{http.MethodPost, "/admin/subs/killUpstream", (*Server).killUpstream},
		{http.MethodGet, "/admin/subs/getEnabled", (*Server).getEnabled},
		{http.MethodPost, "/admin/subs/setEnabled", (*Server).setEnabled},
		{http.MethodGet, "/admin/subs/perDayLimit", (*Server).perDayLimit},
		{http.MethodPost, "/admin/subs/setPerDayLimit", (*Server).setPerDayLimit},
		{http.MethodGet, "/admin/pds/list", (*Server).listHosts},
		{http.MethodPost, "/admin/pds/requestCrawl", (*Server).requestCrawl},
		{http.MethodPost, "/admin/pds/changeLimits", (*Server).changeLimits},
		{http.MethodPost, "/admin/pds/block", (*Server).blockHost},
		{http.MethodPost, "/admin/pds/unblock", (*Server).unblockHost},
		{http.MethodPost, "/admin/pds/resetCursor", (*Server).resetCursor},
		{http.MethodPost, "/admin/repo/takeDown", (*Server).takedown},
		{http.MethodPost, "/admin/repo/takedown", (*Server).takedown},
		{http.MethodPost, "/admin/repo/reverseTakedown", (*Server).reverseTakedown},
		{http.MethodGet, "/admin/repo/takedowns", (*Server).listTakedowns},
		{http.MethodPost, "/admin/repo/resync", (*Server).resync},
		{http.MethodGet, "/admin/consumers/list", (*Server).consumers},
		{http.MethodPost, "/admin/domain/ban", (*Server).banDomain},
		{http.MethodPost, "/admin/subs/banDomain", (*Server).banDomain},
		{http.MethodPost, "/admin/domain/unban", (*Server).unbanDomain},
		{http.MethodPost, "/admin/subs/unbanDomain", (*Server).unbanDomain},
		{http.MethodGet, "/admin/domain/list", (*Server).listDomains},
		{http.MethodGet, "/admin/subs/listDomainBans", (*Server).listDomains},
	}
}

// Paths returns every admin path the Server routes, for tests and docs.
func Paths() []string {
	routes := routeTable()
	out := make([]string, len(routes))
	for i := range routes {
		out[i] = routes[i].path
	}
	return out
}

// New builds the admin handler.
func New(cfg Config) (*Server, error) {
	var tokens [][sha256.Size]byte
	for _, t := range append([]string{cfg.Token}, cfg.Tokens...) {
		if t != "" {
			tokens = append(tokens, sha256.Sum256([]byte(t)))
		}
	}
	if len(tokens) == 0 {
		return nil, ErrNoToken
	}
	if cfg.Store == nil || cfg.Engine == nil {
		return nil, ErrBadConfig
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{st: cfg.Store, eng: cfg.Engine, tokens: tokens, log: cfg.Logger, mux: http.NewServeMux()}
	s.quota, _ = cfg.Engine.(NewHostQuota)
	routes := routeTable()
	for i := range routes {
		rt := &routes[i]
		s.mux.HandleFunc(rt.path, func(w http.ResponseWriter, r *http.Request) {
			if r.Method != rt.method {
				w.Header().Set("Allow", rt.method)
				writeError(w, http.StatusMethodNotAllowed, http.StatusText(http.StatusMethodNotAllowed))
				return
			}
			rt.fn(s, w, r)
		})
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, http.StatusText(http.StatusNotFound))
	})
	return s, nil
}

// ServeHTTP authenticates r, then routes it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.Protect(s.mux).ServeHTTP(w, r)
}

// Protect wraps h with the admin token check, for the other handlers on the
// admin listener (/metrics, /debug/pprof).
func (s *Server) Protect(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			w.Header().Add("WWW-Authenticate", `Bearer realm="relay-admin"`)
			w.Header().Add("WWW-Authenticate", `Basic realm="relay-admin"`)
			writeError(w, http.StatusUnauthorized, http.StatusText(http.StatusUnauthorized))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// authorized checks the Bearer token or Basic admin:<token> credentials
// against every accepted token, without stopping at the first match.
func (s *Server) authorized(r *http.Request) bool {
	var given string
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		given = strings.TrimSpace(h[7:])
	} else if user, pass, ok := r.BasicAuth(); ok && user == "admin" {
		given = pass
	} else {
		return false
	}
	sum := sha256.Sum256([]byte(given))
	ok := 0
	for i := range s.tokens {
		ok |= subtle.ConstantTimeCompare(sum[:], s.tokens[i][:])
	}
	return ok == 1
}

// errorBody is the reference relay's admin error shape: one human-readable
// "error" string. requestCrawl, which the reference answers like its XRPC
// procedure, answers with httpjson.Error instead.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	httpjson.Write(w, code, errorBody{Error: msg})
}

// successBody is the reference relay's action answer, {"success":"true"}.
type successBody struct {
	Success string `json:"success"`
}

func writeSuccess(w http.ResponseWriter) {
	httpjson.Write(w, http.StatusOK, successBody{Success: "true"})
}
