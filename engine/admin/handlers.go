package admin

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/atrelay/relay/engine/atproto/syntax"
	"github.com/atrelay/relay/engine/httpjson"
	"github.com/atrelay/relay/engine/xrpc"
	"github.com/atrelay/relay/store"
)

// maxBodyBytes bounds admin request bodies; they hold a few short fields.
const maxBodyBytes = 16 << 10

// Paging bounds of the admin lists.
const (
	defaultHostsLimit = 500
	maxHostsLimit     = 10_000
	takedownsLimit    = 500
	// takedownScanAccounts bounds the accounts one takedowns call reads; a
	// page that hits it ends early with a cursor.
	takedownScanAccounts = 100_000
)

// input is every field any admin action takes, from the JSON body and, for
// the reference relay's query-parameter endpoints, from the query string
// (the body wins). It is also the body the Client sends.
type input struct {
	Host     string `json:"host,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	DID      string `json:"did,omitempty"`
	Domain   string `json:"domain,omitempty"`
	Block    *bool  `json:"block,omitempty"`
	Enabled  *bool  `json:"enabled,omitempty"`
	Limit    *int64 `json:"limit,omitempty"`

	AccountLimit *uint64 `json:"repo_limit,omitempty"`
	Trusted      *bool   `json:"trusted,omitempty"`
	// PerSecond is a number because the reference admin UI sends back the
	// PerSecondEventRate.Max it was shown, -1 when unknown (see limits).
	PerSecond *float64 `json:"per_second,omitempty"`
}

// maxPerSecond bounds a per-second override: more than any host can send.
const maxPerSecond = 1 << 32

// limits returns the host limits the input changes. A negative per_second
// is the reference's "not reported" value coming back from its UI and
// changes nothing; a fractional or huge one is refused.
func (in *input) limits() (HostLimits, error) {
	l := HostLimits{AccountLimit: in.AccountLimit, Trusted: in.Trusted}
	if p := in.PerSecond; p != nil && *p >= 0 {
		if *p != math.Trunc(*p) || *p > maxPerSecond {
			return l, errors.New("per_second must be a whole number of events")
		}
		n := uint64(*p)
		l.PerSecond = &n
	}
	return l, nil
}

// errBadInput marks an input the handler already answered.
var errBadInput = errors.New("admin: bad input")

// readInput decodes r's body and query into in. On failure it has written
// a 400/413 and returns errBadInput.
func readInput(w http.ResponseWriter, r *http.Request, in *input) error {
	body := http.MaxBytesReader(w, r.Body, maxBodyBytes)
	dec := json.NewDecoder(body)
	if err := dec.Decode(in); err != nil && !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
		} else {
			writeError(w, http.StatusBadRequest, "invalid body: "+err.Error())
		}
		return errBadInput
	}
	q := r.URL.Query()
	fill := func(dst *string, key string) {
		if *dst == "" {
			*dst = q.Get(key)
		}
		*dst = strings.TrimSpace(*dst)
	}
	fill(&in.Host, "host")
	fill(&in.Hostname, "hostname")
	fill(&in.DID, "did")
	fill(&in.Domain, "domain")
	for _, b := range []struct {
		dst **bool
		key string
	}{{&in.Block, "block"}, {&in.Enabled, "enabled"}} {
		if *b.dst != nil || !q.Has(b.key) {
			continue
		}
		v, err := strconv.ParseBool(q.Get(b.key))
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid "+b.key+" parameter")
			return errBadInput
		}
		*b.dst = &v
	}
	return nil
}

// hostname returns the host the action names ("host", or "hostname").
func (in *input) hostname() string {
	if in.Host != "" {
		return in.Host
	}
	return in.Hostname
}

// engineError answers for a failed Engine call, with the reference
// relay's status and its {"error": message} body.
func (s *Server) engineError(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrUnknownHost), errors.Is(err, ErrUnknownAccount):
		code = http.StatusNotFound
	case errors.Is(err, ErrNotConnected), errors.Is(err, xrpc.ErrBadHostname):
		code = http.StatusBadRequest
	default:
		s.log.Error("admin: action failed", "path", r.URL.Path, "err", err)
	}
	writeError(w, code, err.Error())
}

// crawlError answers for a failed admin requestCrawl: the reference relay
// answers it like its XRPC procedure, {"error": Name, "message": ...}.
func (s *Server) crawlError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, xrpc.ErrBadHostname):
		httpjson.Error(w, http.StatusBadRequest, "BadRequest", err.Error())
	case errors.Is(err, xrpc.ErrHostBanned):
		httpjson.Error(w, http.StatusForbidden, "HostBanned", err.Error())
	case errors.Is(err, xrpc.ErrHostNotFound):
		httpjson.Error(w, http.StatusBadRequest, "HostNotFound", err.Error())
	case errors.Is(err, xrpc.ErrNewHostLimit):
		httpjson.Error(w, http.StatusTooManyRequests, "RateLimitExceeded", err.Error())
	default:
		s.log.Error("admin: crawl failed", "path", r.URL.Path, "err", err)
		httpjson.Error(w, http.StatusInternalServerError, "InternalServerError", err.Error())
	}
}

// act runs an engine action and answers success or the mapped error.
func (s *Server) act(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		s.engineError(w, r, err)
		return
	}
	writeSuccess(w)
}

// hostArg returns the host the input names; if there is none it has
// answered 400.
func hostArg(w http.ResponseWriter, in *input) (string, bool) {
	host := in.hostname()
	if host == "" || len(host) > store.MaxHostnameBytes {
		writeError(w, http.StatusBadRequest, "must pass a valid hostname")
		return "", false
	}
	return host, true
}

// hostAction reads a host name and runs fn on it.
func (s *Server) hostAction(w http.ResponseWriter, r *http.Request, fn func(in *input, host string) error) {
	var in input
	if readInput(w, r, &in) != nil {
		return
	}
	if host, ok := hostArg(w, &in); ok {
		s.act(w, r, fn(&in, host))
	}
}

// didAction reads a DID and runs fn on it.
func (s *Server) didAction(w http.ResponseWriter, r *http.Request, fn func(did string) error) {
	var in input
	if readInput(w, r, &in) != nil {
		return
	}
	if in.DID == "" {
		writeError(w, http.StatusBadRequest, "must specify DID parameter in body")
		return
	}
	if _, err := syntax.ParseDID(in.DID); err != nil {
		writeError(w, http.StatusBadRequest, "invalid DID: "+err.Error())
		return
	}
	s.act(w, r, fn(in.DID))
}

func (s *Server) upstreamConns(w http.ResponseWriter, _ *http.Request) {
	conns := s.eng.UpstreamConns()
	if conns == nil {
		conns = []string{}
	}
	httpjson.Write(w, http.StatusOK, conns)
}

func (s *Server) killUpstream(w http.ResponseWriter, r *http.Request) {
	s.hostAction(w, r, func(in *input, host string) error {
		return s.eng.KillUpstream(r.Context(), host, in.Block != nil && *in.Block)
	})
}

// EnabledBody is the getEnabled answer and setEnabled request.
type EnabledBody struct {
	Enabled bool `json:"enabled"`
}

func (s *Server) getEnabled(w http.ResponseWriter, _ *http.Request) {
	httpjson.Write(w, http.StatusOK, EnabledBody{Enabled: s.eng.CrawlEnabled()})
}

func (s *Server) setEnabled(w http.ResponseWriter, r *http.Request) {
	var in input
	if readInput(w, r, &in) != nil {
		return
	}
	if in.Enabled == nil {
		writeError(w, http.StatusBadRequest, "enabled parameter required")
		return
	}
	s.act(w, r, s.eng.SetCrawlEnabled(r.Context(), *in.Enabled))
}

func (s *Server) requestCrawl(w http.ResponseWriter, r *http.Request) {
	var in input
	if readInput(w, r, &in) != nil {
		return
	}
	host := in.hostname()
	if host == "" || len(host) > store.MaxHostnameBytes {
		httpjson.Error(w, http.StatusBadRequest, "BadRequest", "hostname field empty or invalid")
		return
	}
	if err := s.eng.AdminRequestCrawl(r.Context(), host); err != nil {
		s.crawlError(w, r, err)
		return
	}
	writeSuccess(w)
}

func (s *Server) changeLimits(w http.ResponseWriter, r *http.Request) {
	var in input
	if readInput(w, r, &in) != nil {
		return
	}
	host, ok := hostArg(w, &in)
	if !ok {
		return
	}
	l, err := in.limits()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if l.empty() {
		writeError(w, http.StatusBadRequest, "missing repo_limit parameter (or trusted, per_second)")
		return
	}
	s.act(w, r, s.eng.SetHostLimits(r.Context(), host, l))
}

func (s *Server) blockHost(w http.ResponseWriter, r *http.Request) {
	s.hostAction(w, r, func(_ *input, host string) error { return s.eng.BanHost(r.Context(), host) })
}

func (s *Server) unblockHost(w http.ResponseWriter, r *http.Request) {
	s.hostAction(w, r, func(_ *input, host string) error { return s.eng.UnbanHost(r.Context(), host) })
}

func (s *Server) resetCursor(w http.ResponseWriter, r *http.Request) {
	s.hostAction(w, r, func(_ *input, host string) error { return s.eng.ResetCursor(r.Context(), host) })
}

func (s *Server) takedown(w http.ResponseWriter, r *http.Request) {
	s.didAction(w, r, func(did string) error { return s.eng.Takedown(r.Context(), did) })
}

func (s *Server) reverseTakedown(w http.ResponseWriter, r *http.Request) {
	s.didAction(w, r, func(did string) error { return s.eng.ReverseTakedown(r.Context(), did) })
}

func (s *Server) resync(w http.ResponseWriter, r *http.Request) {
	s.didAction(w, r, func(did string) error { return s.eng.Resync(r.Context(), did) })
}

func (s *Server) banDomain(w http.ResponseWriter, r *http.Request) {
	s.domainAction(w, r, func(d string) error { return s.eng.BanDomain(r.Context(), d) })
}

func (s *Server) unbanDomain(w http.ResponseWriter, r *http.Request) {
	s.domainAction(w, r, func(d string) error { return s.eng.UnbanDomain(r.Context(), d) })
}

func (s *Server) domainAction(w http.ResponseWriter, r *http.Request, fn func(domain string) error) {
	var in input
	if readInput(w, r, &in) != nil {
		return
	}
	d := strings.ToLower(in.Domain)
	if d == "" || len(d) > store.MaxDomainBytes {
		writeError(w, http.StatusBadRequest, "must specify domain")
		return
	}
	s.act(w, r, fn(d))
}

// DomainList is the domain/list answer (the reference relay's shape).
type DomainList struct {
	BannedDomains []string `json:"banned_domains"`
}

func (s *Server) listDomains(w http.ResponseWriter, _ *http.Request) {
	httpjson.Write(w, http.StatusOK, DomainList{BannedDomains: s.st.Bans()})
}
