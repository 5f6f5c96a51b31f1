package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/atrelay/relay/engine/syntax"
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
// (the body wins).
type input struct {
	Host     string `json:"host,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	DID      string `json:"did,omitempty"`
	Domain   string `json:"domain,omitempty"`
	Block    *bool  `json:"block,omitempty"`
	Enabled  *bool  `json:"enabled,omitempty"`
	HostLimits
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
			writeError(w, http.StatusRequestEntityTooLarge, "InvalidRequest", "request body too large")
		} else {
			writeError(w, http.StatusBadRequest, "InvalidRequest", "invalid JSON body: "+err.Error())
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
			writeError(w, http.StatusBadRequest, "InvalidRequest", "invalid "+b.key+" parameter")
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

// engineError answers for a failed Engine call.
func (s *Server) engineError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrUnknownHost):
		writeError(w, http.StatusNotFound, "HostNotFound", err.Error())
	case errors.Is(err, ErrUnknownAccount):
		writeError(w, http.StatusNotFound, "RepoNotFound", err.Error())
	case errors.Is(err, ErrNotConnected):
		writeError(w, http.StatusBadRequest, "NotConnected", err.Error())
	case errors.Is(err, xrpc.ErrBadHostname):
		writeError(w, http.StatusBadRequest, "BadRequest", err.Error())
	case errors.Is(err, xrpc.ErrHostBanned):
		writeError(w, http.StatusForbidden, "HostBanned", err.Error())
	case errors.Is(err, xrpc.ErrHostNotFound):
		writeError(w, http.StatusBadRequest, "HostNotFound", err.Error())
	case errors.Is(err, xrpc.ErrNewHostLimit):
		writeError(w, http.StatusTooManyRequests, "RateLimitExceeded", err.Error())
	default:
		s.log.Error("admin: action failed", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "InternalServerError", err.Error())
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
		writeError(w, http.StatusBadRequest, "BadRequest", "host required")
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
	if _, err := syntax.ParseDID(in.DID); err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", "valid did required")
		return
	}
	s.act(w, r, fn(in.DID))
}

func (s *Server) upstreamConns(w http.ResponseWriter, _ *http.Request) {
	conns := s.eng.UpstreamConns()
	if conns == nil {
		conns = []string{}
	}
	writeJSON(w, http.StatusOK, conns)
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
	writeJSON(w, http.StatusOK, EnabledBody{Enabled: s.eng.CrawlEnabled()})
}

func (s *Server) setEnabled(w http.ResponseWriter, r *http.Request) {
	var in input
	if readInput(w, r, &in) != nil {
		return
	}
	if in.Enabled == nil {
		writeError(w, http.StatusBadRequest, "BadRequest", "enabled required")
		return
	}
	s.act(w, r, s.eng.SetCrawlEnabled(r.Context(), *in.Enabled))
}

func (s *Server) requestCrawl(w http.ResponseWriter, r *http.Request) {
	s.hostAction(w, r, func(_ *input, host string) error { return s.eng.AdminCrawl(r.Context(), host) })
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
	if in.HostLimits.empty() {
		writeError(w, http.StatusBadRequest, "BadRequest", "no limit to change (repo_limit, trusted, per_second)")
		return
	}
	s.act(w, r, s.eng.SetHostLimits(r.Context(), host, in.HostLimits))
}

func (s *Server) blockHost(w http.ResponseWriter, r *http.Request) {
	s.hostAction(w, r, func(_ *input, host string) error { return s.eng.BanHost(r.Context(), host) })
}

func (s *Server) unblockHost(w http.ResponseWriter, r *http.Request) {
	s.hostAction(w, r, func(_ *input, host string) error { return s.eng.UnbanHost(r.Context(), host) })
}

func (s *Server) resetCursor(w http.ResponseWriter, r *http.Request) {
	s.hostAction(w, r, func(_ *input, host string) error { return s.eng.ResetHostCursor(r.Context(), host) })
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
		writeError(w, http.StatusBadRequest, "BadRequest", "domain required")
		return
	}
	s.act(w, r, fn(d))
}

// DomainList is the domain/list answer (the reference relay's shape).
type DomainList struct {
	BannedDomains []string `json:"banned_domains"`
}

func (s *Server) listDomains(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, DomainList{BannedDomains: s.st.Bans()})
}

func (s *Server) consumers(w http.ResponseWriter, _ *http.Request) {
	cs := s.eng.Consumers()
	if cs == nil {
		cs = []Consumer{}
	}
	writeJSON(w, http.StatusOK, cs)
}

// HostInfo is one host in the pds/list answer.
type HostInfo struct {
	ID           uint32     `json:"id"`
	Hostname     string     `json:"hostname,omitempty"`
	Status       string     `json:"status"`
	Trusted      bool       `json:"trusted"`
	Connected    bool       `json:"connected"`
	Cursor       uint64     `json:"cursor"` // last persisted upstream seq
	AccountCount uint64     `json:"accountCount"`
	AccountLimit uint64     `json:"accountLimit"`
	Events       uint64     `json:"events"` // events persisted from the host
	FirstSeen    time.Time  `json:"firstSeen"`
	LastConnect  *time.Time `json:"lastConnect,omitempty"`
	LastErrorAt  *time.Time `json:"lastErrorAt,omitempty"`
	LastError    string     `json:"lastError,omitempty"`
}

// HostPage is the pds/list answer; Cursor is set when the page was full.
type HostPage struct {
	Hosts  []HostInfo `json:"hosts"`
	Cursor string     `json:"cursor,omitempty"`
}

func milliTime(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := defaultHostsLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxHostsLimit {
			writeError(w, http.StatusBadRequest, "InvalidRequest", "limit must be an integer from 1 to 10000")
			return
		}
		limit = n
	}
	var after uint64
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			writeError(w, http.StatusBadRequest, "InvalidRequest", "invalid cursor")
			return
		}
		after = n
	}
	connected := map[string]bool{}
	for _, h := range s.eng.UpstreamConns() {
		connected[h] = true
	}
	hosts := s.st.ListHosts(store.HostID(after), limit)
	out := HostPage{Hosts: make([]HostInfo, len(hosts))}
	for i := range hosts {
		h := &hosts[i]
		out.Hosts[i] = HostInfo{
			ID: uint32(h.ID), Hostname: h.Hostname, Status: h.Status.String(), Trusted: h.Trusted,
			Connected: connected[h.Hostname], Cursor: h.Cursor, AccountCount: h.AccountCount,
			AccountLimit: h.AccountLimit, Events: h.Events, FirstSeen: time.UnixMilli(h.FirstSeenMilli).UTC(),
			LastConnect: milliTime(h.LastConnectMilli), LastErrorAt: milliTime(h.LastErrorMilli), LastError: h.LastError,
		}
	}
	if len(hosts) == limit {
		out.Cursor = strconv.FormatUint(uint64(hosts[len(hosts)-1].ID), 10)
	}
	writeJSON(w, http.StatusOK, out)
}

// TakedownPage is the repo/takedowns answer; Cursor is set when more
// accounts remain to be scanned.
type TakedownPage struct {
	DIDs   []string `json:"dids"`
	Cursor string   `json:"cursor,omitempty"`
}

func (s *Server) listTakedowns(w http.ResponseWriter, r *http.Request) {
	var after uint64
	if v := r.URL.Query().Get("cursor"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "InvalidRequest", "invalid cursor")
			return
		}
		after = n
	}
	out := TakedownPage{DIDs: []string{}}
	const batch = 1000
	more := false
	for scanned := 0; scanned < takedownScanAccounts && len(out.DIDs) < takedownsLimit; {
		page, err := s.st.ListAccounts(after, batch)
		if err != nil {
			s.engineError(w, r, err)
			return
		}
		more = len(page) == batch
		for i := range page {
			after = page[i].UID
			scanned++
			if page[i].LocalStatus == store.LocalTakendown {
				out.DIDs = append(out.DIDs, string(page[i].DID))
				if len(out.DIDs) == takedownsLimit {
					more = more || i < len(page)-1
					break
				}
			}
		}
		if !more {
			break
		}
	}
	if more {
		out.Cursor = strconv.FormatUint(after, 10)
	}
	writeJSON(w, http.StatusOK, out)
}
