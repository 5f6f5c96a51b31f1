package admin

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/atrelay/relay/engine/httpjson"
	"github.com/atrelay/relay/store"
)

// Listing shapes. The reference relay's paths answer in its shapes by
// default, so its admin UI, goat and operators' scripts decode them
// unchanged; ?format=relay asks pds/list and consumers/list for this
// relay's richer shapes (HostPage, []Consumer), which the Client and
// `relay admin` use.

// formatRelay is the ?format= value that selects this relay's shapes.
const formatRelay = "relay"

// relayFormat reports whether r asks for this relay's shape; an unknown
// format has been answered 400 when ok is false.
func relayFormat(w http.ResponseWriter, r *http.Request) (relay, ok bool) {
	switch f := r.URL.Query().Get("format"); f {
	case "", "reference":
		return false, true
	case formatRelay:
		return true, true
	default:
		writeError(w, http.StatusBadRequest, "unknown format "+strconv.Quote(f)+" (relay or reference)")
		return false, false
	}
}

// RefHost is one host of the reference relay's pds/list answer, field for
// field (its admin UI and goat decode these names). Mapped from this
// relay's host record:
//
//   - Cursor is the persisted upstream seq, -1 when none (the reference's
//     "no sequence recorded"); Registered means status active, Blocked
//     status banned. The other statuses (idle, offline, throttled) show as
//     neither, as in the reference.
//   - SSL is false only for localhost:PORT development hosts, the only
//     ones this relay reads over ws://.
//   - RepoCount and UserCount are the host's account count, RepoLimit its
//     account limit.
//   - EventsSeenSinceStartup counts the events persisted from the host
//     since it was added, not since the process started: this relay keeps
//     the count in the store.
//   - The three event rates report Max -1, the reference's "not known":
//     this relay has a per-second budget only (not shown here) and no
//     per-hour or per-day window. CrawlRateLimit is 0, as the reference
//     always leaves it.
type RefHost struct {
	ID                     uint64
	CreatedAt              time.Time
	Host                   string
	SSL                    bool
	Cursor                 int64
	Registered             bool
	Blocked                bool
	CrawlRateLimit         float64
	RepoCount              int64
	RepoLimit              int64
	HasActiveConnection    bool
	EventsSeenSinceStartup uint64
	PerSecondEventRate     RefRate
	PerHourEventRate       RefRate
	PerDayEventRate        RefRate
	UserCount              int64
}

// RefRate is a rate limit in the reference's pds/list answer: Max events
// per Window seconds, Max -1 when not known.
type RefRate struct {
	Max           float64 `json:"Max"`
	WindowSeconds float64 `json:"Window"`
}

// Windows of the three RefHost rates, in seconds.
const (
	secondWindow = 1
	hourWindow   = 3600
	dayWindow    = 86400
)

// refCount converts a count for the reference's int64 fields.
func refCount(n uint64) int64 { return int64(min(n, 1<<63-1)) }

func refHost(h *store.Host, connected bool) RefHost {
	cursor := int64(-1)
	if h.Cursor > 0 {
		cursor = refCount(h.Cursor)
	}
	return RefHost{
		ID: uint64(h.ID), CreatedAt: time.UnixMilli(h.FirstSeenMilli).UTC(), Host: h.Hostname,
		SSL: !strings.HasPrefix(h.Hostname, "localhost:"), Cursor: cursor,
		Registered: h.Status == store.HostActive, Blocked: h.Status == store.HostBanned,
		RepoCount: refCount(h.AccountCount), RepoLimit: refCount(h.AccountLimit), UserCount: refCount(h.AccountCount),
		HasActiveConnection: connected, EventsSeenSinceStartup: h.Events,
		PerSecondEventRate: RefRate{Max: -1, WindowSeconds: secondWindow},
		PerHourEventRate:   RefRate{Max: -1, WindowSeconds: hourWindow},
		PerDayEventRate:    RefRate{Max: -1, WindowSeconds: dayWindow},
	}
}

// HostInfo is one host in this relay's pds/list answer (?format=relay).
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

// HostPage is this relay's pds/list answer; Cursor is set when the page
// was full.
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

// listHosts answers pds/list. The reference answers its first 10,000
// hosts in id order with no paging; the same call here does the same, and
// cursor and limit page through more in either shape.
func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) {
	relay, ok := relayFormat(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := maxHostsLimit
	if relay {
		limit = defaultHostsLimit
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxHostsLimit {
			writeError(w, http.StatusBadRequest, "limit must be an integer from 1 to 10000")
			return
		}
		limit = n
	}
	var after uint64
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid cursor param")
			return
		}
		after = n
	}
	connected := map[string]bool{}
	for _, h := range s.eng.UpstreamConns() {
		connected[h] = true
	}
	hosts := s.st.ListHosts(store.HostID(after), limit)
	if !relay {
		out := make([]RefHost, len(hosts))
		for i := range hosts {
			out[i] = refHost(&hosts[i], connected[hosts[i].Hostname])
		}
		httpjson.Write(w, http.StatusOK, out)
		return
	}
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
	httpjson.Write(w, http.StatusOK, out)
}

// RefConsumer is one consumer of the reference relay's consumers/list
// answer, field for field. ID is the consumer's place in this answer,
// oldest first (the firehose numbers no consumers, so it is not stable
// across calls); RemoteAddr is the client address without the port;
// EventsConsumed counts the frames sent, #info frames included.
type RefConsumer struct {
	ID             uint64    `json:"id"`
	RemoteAddr     string    `json:"remote_addr"`
	UserAgent      string    `json:"user_agent"`
	EventsConsumed uint64    `json:"events_consumed"`
	ConnectedAt    time.Time `json:"connected_at"`
}

// Consumer is one connected firehose consumer, this relay's shape
// (consumers/list?format=relay).
type Consumer struct {
	RemoteAddr  string    `json:"remoteAddr"`
	UserAgent   string    `json:"userAgent"`
	Cursor      *uint64   `json:"cursor,omitempty"` // cursor asked for at connect, if any
	Position    uint64    `json:"position"`         // seq of the last frame sent
	Lag         uint64    `json:"lag"`              // published seqs above Position
	BytesSent   uint64    `json:"bytesSent"`
	FramesSent  uint64    `json:"framesSent"`
	ConnectedAt time.Time `json:"connectedAt"`
	Mode        string    `json:"mode"` // "live" or "replay"
}

// hostOnly strips the port of a host:port address, as the reference's
// client address has none.
func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

func (s *Server) consumers(w http.ResponseWriter, r *http.Request) {
	relay, ok := relayFormat(w, r)
	if !ok {
		return
	}
	cs := s.eng.Consumers()
	if relay {
		if cs == nil {
			cs = []Consumer{}
		}
		httpjson.Write(w, http.StatusOK, cs)
		return
	}
	out := make([]RefConsumer, len(cs))
	for i := range cs {
		c := &cs[i]
		out[i] = RefConsumer{ID: uint64(i + 1), RemoteAddr: hostOnly(c.RemoteAddr), UserAgent: c.UserAgent,
			EventsConsumed: c.FramesSent, ConnectedAt: c.ConnectedAt}
	}
	httpjson.Write(w, http.StatusOK, out)
}

// TakedownPage is the repo/takedowns answer, the reference relay's shape:
// Cursor, the uid of the last account scanned, is present (non-zero) when
// more accounts remain; pass it back as ?cursor=.
type TakedownPage struct {
	DIDs   []string `json:"dids"`
	Cursor uint64   `json:"cursor,omitempty"`
}

func (s *Server) listTakedowns(w http.ResponseWriter, r *http.Request) {
	var after uint64
	if v := r.URL.Query().Get("cursor"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid cursor param")
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
		out.Cursor = after
	}
	httpjson.Write(w, http.StatusOK, out)
}

// PerDayLimit is the subs/perDayLimit answer.
type PerDayLimit struct {
	Limit int64 `json:"limit"`
}

func (s *Server) perDayLimit(w http.ResponseWriter, _ *http.Request) {
	if s.quota == nil {
		writeError(w, http.StatusNotImplemented, "the engine does not expose the new-host limit")
		return
	}
	httpjson.Write(w, http.StatusOK, PerDayLimit{Limit: s.quota.NewHostsPerDay()})
}

func (s *Server) setPerDayLimit(w http.ResponseWriter, r *http.Request) {
	var in input
	if readInput(w, r, &in) != nil {
		return
	}
	if q := r.URL.Query(); in.Limit == nil && q.Has("limit") {
		n, err := strconv.ParseInt(q.Get("limit"), 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "failed to parse limit: "+err.Error())
			return
		}
		in.Limit = &n
	}
	if in.Limit == nil || *in.Limit < 0 {
		writeError(w, http.StatusBadRequest, "limit parameter required: a non-negative integer")
		return
	}
	if s.quota == nil {
		writeError(w, http.StatusNotImplemented, "the engine does not expose the new-host limit")
		return
	}
	s.act(w, r, s.quota.SetNewHostsPerDay(r.Context(), *in.Limit))
}
