package xrpc

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/atrelay/relay/engine/atproto/syntax"
	"github.com/atrelay/relay/engine/clientip"
	"github.com/atrelay/relay/engine/httpjson"
	"github.com/atrelay/relay/store"
)

// hostItem is com.atproto.sync.listHosts#host and the getHostStatus output.
type hostItem struct {
	Hostname     string `json:"hostname"`
	Seq          int64  `json:"seq"`
	AccountCount int64  `json:"accountCount"`
	Status       string `json:"status"`
}

func makeHostItem(h *store.Host) hostItem {
	return hostItem{
		Hostname:     h.Hostname,
		Seq:          clampInt64(h.Cursor),
		AccountCount: clampInt64(h.AccountCount),
		Status:       h.Status.String(), // HostStatus.String spells defs#hostStatus
	}
}

// clampInt64 keeps counters within JSON-safe signed range.
func clampInt64(v uint64) int64 {
	const maxSafe = 1<<53 - 1
	if v > maxSafe {
		return maxSafe
	}
	return int64(v)
}

type listHostsOutput struct {
	Cursor string     `json:"cursor,omitempty"`
	Hosts  []hostItem `json:"hosts"`
}

func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) int {
	limit, ok := parseLimit(r, defaultHostsLimit)
	if !ok {
		return httpjson.Error(w, http.StatusBadRequest, "InvalidRequest", "limit must be an integer from 1 to 1000")
	}
	after, ok := parseCursor(r)
	if !ok || after > uint64(^uint32(0)) {
		return httpjson.Error(w, http.StatusBadRequest, "InvalidRequest", "invalid cursor")
	}
	hosts := s.st.ListHosts(store.HostID(after), limit)
	out := listHostsOutput{Hosts: make([]hostItem, len(hosts))}
	for i := range hosts {
		out.Hosts[i] = makeHostItem(&hosts[i])
	}
	if len(hosts) == limit {
		out.Cursor = strconv.FormatUint(uint64(hosts[len(hosts)-1].ID), 10)
	}
	return httpjson.Write(w, http.StatusOK, out)
}

func (s *Server) getHostStatus(w http.ResponseWriter, r *http.Request) int {
	name := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("hostname")))
	if name == "" || len(name) > store.MaxHostnameBytes {
		return httpjson.Error(w, http.StatusBadRequest, "InvalidRequest", "hostname parameter required")
	}
	h, ok := s.st.HostByName(name)
	if !ok {
		return httpjson.Error(w, http.StatusNotFound, "HostNotFound", "host not found: "+name)
	}
	return httpjson.Write(w, http.StatusOK, makeHostItem(&h))
}

// crawlInput is the requestCrawl / notifyOfUpdate body.
type crawlInput struct {
	Hostname string `json:"hostname"`
}

func (s *Server) requestCrawl(w http.ResponseWriter, r *http.Request) int {
	var in crawlInput
	body := http.MaxBytesReader(w, r.Body, maxBodyBytes)
	dec := json.NewDecoder(body)
	if err := dec.Decode(&in); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return httpjson.Error(w, http.StatusRequestEntityTooLarge, "InvalidRequest", "request body too large")
		}
		if errors.Is(err, io.EOF) {
			return httpjson.Error(w, http.StatusBadRequest, "InvalidRequest", "request body required")
		}
		return httpjson.Error(w, http.StatusBadRequest, "InvalidRequest", "invalid JSON body")
	}
	hostname := strings.TrimSpace(in.Hostname)
	if hostname == "" {
		return httpjson.Error(w, http.StatusBadRequest, "BadRequest", "hostname field empty")
	}
	// The per-client limit bounds what a caller makes the engine do: probe
	// and maybe subscribe to a host of its choice. A plaintext development
	// host (localhost, loopback) is exempt: without the engine's
	// development switch it is refused with no network traffic, and with
	// it (benchmarks crawl a thousand local hosts) the probe stays on this
	// machine.
	if !isDevHostname(hostname) && !s.crawlLim.Allow(clientip.Key(s.clients.Addr(r)), time.Now()) {
		w.Header().Set("Retry-After", s.crawlRetry)
		return httpjson.Error(w, http.StatusTooManyRequests, "RateLimitExceeded", "too many requestCrawl calls from this address; try again later")
	}
	err := s.eng.RequestCrawl(r.Context(), hostname)
	switch {
	case err == nil:
		w.WriteHeader(http.StatusOK)
		return http.StatusOK
	case errors.Is(err, ErrBadHostname):
		return httpjson.Error(w, http.StatusBadRequest, "BadRequest", "hostname field empty or invalid: "+hostname)
	case errors.Is(err, ErrHostBanned):
		return httpjson.Error(w, http.StatusForbidden, "HostBanned", "host or domain is banned")
	case errors.Is(err, ErrHostNotFound):
		return httpjson.Error(w, http.StatusBadRequest, "HostNotFound", "host server unreachable")
	case errors.Is(err, ErrNewHostLimit):
		return httpjson.Error(w, http.StatusTooManyRequests, "RateLimitExceeded", "new host limit reached; try again later")
	case errors.Is(err, ErrCrawlDisabled):
		return httpjson.Error(w, http.StatusForbidden, "Forbidden", "public requestCrawl is not allowed on this relay")
	}
	return s.internalError(w, r, err)
}

// isDevHostname reports whether a requestCrawl hostname, as given,
// names a plaintext development host (syntax.PlaintextHost).
func isDevHostname(h string) bool {
	name, err := syntax.NormalizeHost(h, true)
	return err == nil && syntax.PlaintextHost(name)
}
