package xrpc

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/engine/clientip"
	"github.com/atrelay/relay/engine/httpjson"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/store"
)

// Engine is what the public API asks of the running relay beyond store
// reads. The relay engine implements it.
type Engine interface {
	// RequestCrawl asks the relay to subscribe to hostname, given exactly as
	// the client sent it (the engine normalizes it, digest §14.2). Failures
	// wrap one of ErrBadHostname, ErrHostBanned, ErrHostNotFound,
	// ErrNewHostLimit or ErrCrawlDisabled; anything else is a 500.
	RequestCrawl(ctx context.Context, hostname string) error
	// Health returns nil while the relay can serve, and an error (for
	// example a failed store write) when it cannot; /xrpc/_health answers
	// 503 then.
	Health(ctx context.Context) error
}

// Resolver tells getRepo what the relay already knows of an account's
// DID document. *identity.Resolver implements it.
type Resolver interface {
	// Cached returns did's identity if it is cached (ok false otherwise;
	// a cached failure is ok true with its error). It must never resolve:
	// a public request must not turn into one to the PLC directory or a
	// did:web host.
	Cached(did string) (id identity.Identity, ok bool, err error)
}

// Errors the Engine wraps so that requestCrawl answers with the right
// status and lexicon error name.
var (
	// ErrBadHostname: the hostname is empty or not a valid host (400 BadRequest).
	ErrBadHostname = errors.New("xrpc: invalid hostname")
	// ErrHostBanned: the host or a parent domain is banned (403 HostBanned).
	ErrHostBanned = errors.New("xrpc: host is banned")
	// ErrHostNotFound: the host did not answer as a PDS (400 HostNotFound).
	ErrHostNotFound = errors.New("xrpc: host unreachable or not a PDS")
	// ErrNewHostLimit: the new-hosts-per-day limit is spent (429 RateLimitExceeded).
	ErrNewHostLimit = errors.New("xrpc: new host limit reached")
	// ErrCrawlDisabled: public requestCrawl is switched off (403 Forbidden).
	ErrCrawlDisabled = errors.New("xrpc: public requestCrawl is disabled")
)

// ErrBadConfig is returned by New when a required Config field is missing.
var ErrBadConfig = errors.New("xrpc: invalid config")

// Config configures a Server. Store, Engine and Resolver are required.
type Config struct {
	Store    *store.Store
	Engine   Engine
	Resolver Resolver
	// Firehose serves com.atproto.sync.subscribeRepos (engine/firehose's
	// Hub). Nil answers that path with 501 MethodNotImplemented.
	Firehose http.Handler
	// Metrics receives the request counters (default: a private Set).
	Metrics *metrics.Set
	// Logger receives internal-error lines (default: discard).
	Logger *slog.Logger
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client for per-client limits (default none: the TCP peer is the
	// client). See engine/clientip.
	TrustedProxies []netip.Prefix
	// CrawlRequestsPerMinute is how many requestCrawl (and notifyOfUpdate)
	// calls one client may make a minute, in bursts of as many; beyond it
	// the answer is 429 RateLimitExceeded before the engine is asked.
	// Clients are IPv4 addresses and IPv6 /64s; development hosts
	// (localhost:PORT) are exempt. Default 5.
	CrawlRequestsPerMinute int
	// CrawlClients bounds the clients whose requestCrawl rate is
	// remembered (about 100 bytes each). Default 10,000.
	CrawlClients int
	// MaxListsInFlight bounds the list requests (listRepos, listHosts)
	// answered at once, each holding up to ListRequestBytes while it
	// builds its page; one that finds none free waits up to listWait,
	// then gets 503 with Retry-After. Default 8.
	MaxListsInFlight int
}

// Defaults of Config's limits.
const (
	DefaultCrawlRequestsPerMinute = 5
	DefaultCrawlClients           = 10_000
	DefaultMaxListsInFlight       = 8
)

// ListRequestBytes bounds what one list request allocates while it
// builds a page of maxLimit entries: the store's pages, the output and its
// JSON (measured 1.06 MiB for listRepos with the response recorded whole,
// 0.31 MiB for listHosts; TestListRequestBytes), with a third of margin.
// A relay's memory budget counts MaxListsInFlight of them.
const ListRequestBytes = 1536 << 10

// listWait is how long a list request waits for a turn before 503 (a
// variable for tests).
var listWait = 5 * time.Second

// Server is the public API handler. It is immutable after New and safe for
// concurrent use.
type Server struct {
	st       *store.Store
	eng      Engine
	res      Resolver
	firehose http.Handler
	log      *slog.Logger
	set      *metrics.Set
	mux      *http.ServeMux
	counts   *requestCounters
	eps      [numEndpoints]endpoint
	clients  clientip.Policy
	crawlLim *clientip.Limiter // its own lock
	// crawlRetry is the Retry-After of a per-client refusal, in seconds.
	crawlRetry string
	// lists holds a token per list request being answered
	// (MaxListsInFlight).
	lists chan struct{}
}

// endpoint is one served route: its NSID, method and handler. The table
// below is the closed set of metric endpoint labels.
type endpoint struct {
	nsid   string
	method string
	fn     func(s *Server, w http.ResponseWriter, r *http.Request) int
	list   bool // a page of up to maxLimit entries: takes a lists token
}

// Maximum request body for the procedures; {"hostname": "..."} is tiny.
const maxBodyBytes = 8 << 10

// Paging bounds from the lexicons.
const (
	maxLimit          = 1000
	defaultReposLimit = 500
	defaultHostsLimit = 200
)

const (
	nsidSubscribeRepos = "com.atproto.sync.subscribeRepos"
	healthPath         = "/xrpc/_health"
)

// numEndpoints is len(endpoints); a constant so counter arrays can be sized
// by it.
const numEndpoints = 9

// endpointTable returns the served endpoints; the index of each is its
// counter row.
func endpointTable() [numEndpoints]endpoint {
	return [numEndpoints]endpoint{
		{"_health", http.MethodGet, (*Server).health, false},
		{"com.atproto.sync.listRepos", http.MethodGet, (*Server).listRepos, true},
		{"com.atproto.sync.getLatestCommit", http.MethodGet, (*Server).getLatestCommit, false},
		{"com.atproto.sync.getRepoStatus", http.MethodGet, (*Server).getRepoStatus, false},
		{"com.atproto.sync.getRepo", http.MethodGet, (*Server).getRepo, false},
		{"com.atproto.sync.listHosts", http.MethodGet, (*Server).listHosts, true},
		{"com.atproto.sync.getHostStatus", http.MethodGet, (*Server).getHostStatus, false},
		{"com.atproto.sync.requestCrawl", http.MethodPost, (*Server).requestCrawl, false},
		{"com.atproto.sync.notifyOfUpdate", http.MethodPost, (*Server).requestCrawl, false},
	}
}

// New builds the API handler.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Engine == nil || cfg.Resolver == nil {
		return nil, ErrBadConfig
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CrawlRequestsPerMinute <= 0 {
		cfg.CrawlRequestsPerMinute = DefaultCrawlRequestsPerMinute
	}
	if cfg.CrawlClients <= 0 {
		cfg.CrawlClients = DefaultCrawlClients
	}
	if cfg.MaxListsInFlight <= 0 {
		cfg.MaxListsInFlight = DefaultMaxListsInFlight
	}
	s := &Server{
		st: cfg.Store, eng: cfg.Engine, res: cfg.Resolver, firehose: cfg.Firehose,
		log: cfg.Logger, set: cfg.Metrics, mux: http.NewServeMux(), eps: endpointTable(),
		clients:    clientip.Policy{TrustedProxies: cfg.TrustedProxies},
		crawlLim:   clientip.NewLimiter(float64(cfg.CrawlRequestsPerMinute), cfg.CrawlRequestsPerMinute, cfg.CrawlClients),
		crawlRetry: strconv.Itoa((60 + cfg.CrawlRequestsPerMinute - 1) / cfg.CrawlRequestsPerMinute),
		lists:      make(chan struct{}, cfg.MaxListsInFlight),
	}
	s.counts = newRequestCounters(cfg.Metrics, &s.eps)
	for i := range s.eps {
		ep := &s.eps[i]
		idx := i
		s.mux.HandleFunc("/xrpc/"+ep.nsid, func(w http.ResponseWriter, r *http.Request) {
			s.serveEndpoint(idx, w, r)
		})
	}
	s.mux.HandleFunc("/xrpc/"+nsidSubscribeRepos, s.subscribeRepos)
	s.mux.HandleFunc("/", s.notFound)
	return s, nil
}

// Metrics returns the Set the request counters live in.
func (s *Server) Metrics() *metrics.Set { return s.set }

// ServeHTTP routes r. Every response carries Access-Control-Allow-Origin: *.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, Atproto-Proxy, Atproto-Accept-Labelers")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// serveEndpoint checks the method, runs the handler and counts the answer.
func (s *Server) serveEndpoint(idx int, w http.ResponseWriter, r *http.Request) {
	ep := &s.eps[idx]
	var code int
	if r.Method != ep.method && !(ep.method == http.MethodGet && r.Method == http.MethodHead) {
		w.Header().Set("Allow", ep.method)
		code = httpjson.Error(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "use "+ep.method)
	} else if ep.list && !s.takeList(r) {
		w.Header().Set("Retry-After", "1")
		code = httpjson.Error(w, http.StatusServiceUnavailable, "ServiceUnavailable", "too many list requests in flight; retry")
	} else {
		code = ep.fn(s, w, r)
		if ep.list {
			<-s.lists
		}
	}
	s.counts.inc(idx, code)
}

// takeList waits for a list request's turn (MaxListsInFlight) while r's
// client waits, at most listWait; false when it got none.
func (s *Server) takeList(r *http.Request) bool {
	select {
	case s.lists <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(listWait)
	defer t.Stop()
	select {
	case s.lists <- struct{}{}:
		return true
	case <-r.Context().Done():
	case <-t.C:
	}
	return false
}

func (s *Server) subscribeRepos(w http.ResponseWriter, r *http.Request) {
	if s.firehose == nil {
		httpjson.Error(w, http.StatusNotImplemented, "MethodNotImplemented", "firehose not available")
		return
	}
	// Not wrapped or counted here: the firehose hijacks the connection and
	// keeps its own metrics.
	s.firehose.ServeHTTP(w, r)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	code := httpjson.Error(w, http.StatusNotFound, "MethodNotImplemented", "no such method")
	s.counts.inc(otherEndpoint, code)
}

// internalError logs err and answers 500 without leaking it.
func (s *Server) internalError(w http.ResponseWriter, r *http.Request, err error) int {
	s.log.Error("xrpc: internal error", "path", r.URL.Path, "err", err)
	return httpjson.Error(w, http.StatusInternalServerError, "InternalServerError", "internal error")
}

// parseLimit reads the limit parameter: absent means def, otherwise an
// integer in [1, maxLimit].
func parseLimit(r *http.Request, def int) (int, bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxLimit {
		return 0, false
	}
	return n, true
}

// parseCursor reads the opaque cursor: absent means 0 (from the start),
// otherwise a decimal uint64 we handed out.
func parseCursor(r *http.Request) (uint64, bool) {
	v := r.URL.Query().Get("cursor")
	if v == "" {
		return 0, true
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) int {
	if err := s.eng.Health(r.Context()); err != nil {
		s.log.Warn("xrpc: unhealthy", "err", err)
		return httpjson.Write(w, http.StatusServiceUnavailable, healthBody{Status: "error", Message: err.Error()})
	}
	return httpjson.Write(w, http.StatusOK, healthBody{Status: "ok"})
}

// healthBody is the /xrpc/_health answer (the reference relay's shape).
type healthBody struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}
