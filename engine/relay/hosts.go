package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/engine/netguard"
	"github.com/atrelay/relay/engine/syntax"
	"github.com/atrelay/relay/engine/upstream"
	"github.com/atrelay/relay/store"
)

// Errors of the requestCrawl flow (spec §14.3), one per refusal reason.
var (
	// ErrBadHostname: the hostname does not normalise (§14.2).
	ErrBadHostname = errors.New("relay: invalid hostname")
	// ErrHostBanned: the host or one of its parent domains is banned.
	ErrHostBanned = errors.New("relay: host is banned")
	// ErrHostNotFound: the describeServer probe failed.
	ErrHostNotFound = errors.New("relay: host did not answer describeServer")
	// ErrNewHostLimit: the per-day limit of new hosts is used up.
	ErrNewHostLimit = errors.New("relay: new-host limit for today reached")
	// ErrCrawlDisabled: public requestCrawl is switched off by the operator.
	ErrCrawlDisabled = errors.New("relay: public requestCrawl is disabled")
	// ErrUnknownHost: an admin operation named a host the relay does not know.
	ErrUnknownHost = errors.New("relay: unknown host")
	// ErrHostHeld: the host is throttled, held back by an operator
	// (KillUpstream) or by a panic quarantine (faults.go); only an admin
	// requestCrawl (or UnbanHost) revives it. It wraps ErrHostBanned,
	// which is how the public API answers it.
	ErrHostHeld = fmt.Errorf("%w: held back by the relay until an operator resumes it", ErrHostBanned)
	// ErrProbesBusy: MaxConcurrentProbes describeServer probes are already
	// running. It wraps ErrNewHostLimit (the public API answers 429).
	ErrProbesBusy = fmt.Errorf("%w: too many requestCrawl probes in flight", ErrNewHostLimit)
)

// hostState is the relay's live view of one upstream host.
type hostState struct {
	// Static after creation.
	id       store.HostID
	name     string
	insecure bool

	// Totals received, for the top-talker series (hostTop).
	framesIn atomic.Int64
	bytesIn  atomic.Int64

	// up is set once by subscribe, before the first frame; read by anyone.
	up atomic.Pointer[upstream.Host]

	// tr is the in-flight tracker (its own lock).
	tr tracker

	// q is set when a frame of the host made the relay panic (faults.go).
	q quarantine
	// heldBack pauses the host while the sequencer holds too much of its
	// output behind an earlier frame (sequencer.holdBack).
	heldBack atomic.Bool

	// Owned by the host's current Sink invocation (the upstream loop runs
	// one Sink call per host at a time).
	fresh      bool  // first frame of a new connection not yet seen
	dialCursor int64 // cursor the current connection was dialed with

	trusted      atomic.Bool
	accountLimit atomic.Uint64
	accounts     atomic.Int64 // accounts on this host, including not yet durable creations

	// Guarded by mu.
	mu      sync.Mutex
	rate    bucket
	pending []task // frames a full pool refused, in arrival order; submitted by the resumer (guarded by mu)
}

// subscribeLocked starts reading a host. REQUIRES: r.hostsMu held.
func (r *Relay) subscribeLocked(h store.Host) (*hostState, error) {
	if hs := r.hosts[h.Hostname]; hs != nil {
		return hs, nil
	}
	hs := &hostState{id: h.ID, name: h.Hostname, insecure: syntax.PlaintextHost(h.Hostname)}
	hs.trusted.Store(h.Trusted)
	hs.accountLimit.Store(h.AccountLimit)
	hs.accounts.Store(int64(h.AccountCount))
	hs.tr.reset(int64(h.Cursor))
	hs.rate.init(r.rateFor(hs), r.now())
	up, err := r.loop.Add(h.Hostname, upstream.HostOptions{Insecure: hs.insecure, Value: hs})
	if err != nil {
		return nil, err
	}
	hs.up.Store(up)
	r.hosts[h.Hostname] = hs
	r.hostsByID[h.ID] = hs
	return hs, nil
}

// rateFor is the host's event budget per second (spec §14.4, REF numbers).
func (r *Relay) rateFor(hs *hostState) float64 {
	if hs.trusted.Load() {
		return r.cfg.TrustedEventsPerSecond
	}
	return r.cfg.EventsPerSecond + float64(hs.accountLimit.Load())/1000
}

// isTrusted matches hostname against the trusted patterns: "*.suffix"
// matches any subdomain of suffix, "name:*" matches name on any port (so
// "localhost:*" trusts every development host, for benchmarks with many
// local hosts), anything else matches exactly.
func (r *Relay) isTrusted(hostname string) bool {
	for _, p := range r.cfg.TrustedDomains {
		if name, ok := strings.CutSuffix(p, ":*"); ok {
			h, _, err := net.SplitHostPort(hostname)
			if err == nil && (h == name || strings.HasPrefix(name, "*.") && strings.HasSuffix(h, name[1:])) {
				return true
			}
		} else if suffix, ok := strings.CutPrefix(p, "*."); ok {
			if strings.HasSuffix(hostname, "."+suffix) {
				return true
			}
		} else if hostname == p {
			return true
		}
	}
	return false
}

// RequestCrawl is the public com.atproto.sync.requestCrawl (spec §14.3).
func (r *Relay) RequestCrawl(ctx context.Context, hostname string) error {
	if !r.publicCrawl.Load() {
		return ErrCrawlDisabled
	}
	return r.crawl(ctx, hostname, false)
}

// AdminRequestCrawl is requestCrawl for operators: no daily limit, and it
// revives a host held by the operator (KillUpstream). A banned host still
// needs UnbanHost.
func (r *Relay) AdminRequestCrawl(ctx context.Context, hostname string) error {
	return r.crawl(ctx, hostname, true)
}

// SetCrawlEnabled switches public requestCrawl on or off.
func (r *Relay) SetCrawlEnabled(on bool) { r.publicCrawl.Store(on) }

// CrawlEnabled reports whether public requestCrawl is on.
func (r *Relay) CrawlEnabled() bool { return r.publicCrawl.Load() }

// crawl is requestCrawl (spec §14.3) in the order that spends least on a
// hostile caller: every check that needs no network comes before the
// describeServer probe, so a refused request costs no outbound traffic.
func (r *Relay) crawl(ctx context.Context, raw string, admin bool) error {
	name, err := syntax.NormalizeHost(raw, r.cfg.AllowInsecureHosts)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadHostname, err)
	}
	if r.st.IsBanned(name) {
		return ErrHostBanned
	}
	h, known := r.st.HostByName(name)
	if known && !revivable(h.Status, admin) {
		if h.Status == store.HostBanned {
			return ErrHostBanned
		}
		return ErrHostHeld
	}
	r.hostsMu.Lock()
	_, live := r.hosts[name]
	r.hostsMu.Unlock()
	if live {
		return nil
	}
	newHost := !known && !admin
	if newHost && !r.crawls.budgetLeft(r) {
		return ErrNewHostLimit
	}
	if err := r.probe(ctx, name); err != nil {
		return err
	}
	if !known {
		if newHost {
			if err := r.crawls.takeSlot(r); err != nil {
				return err
			}
		}
		limit := r.cfg.DefaultAccountLimit
		trusted := r.isTrusted(name)
		if trusted {
			limit = r.cfg.TrustedAccountLimit
		}
		h, err = r.st.CreateHost(store.NewHost{Hostname: name, Status: store.HostActive, Trusted: trusted, AccountLimit: limit})
		if errors.Is(err, store.ErrHostExists) {
			h, _ = r.st.HostByName(name)
		} else if err != nil {
			return err
		}
		r.log.Info("new host", "host", name, "trusted", trusted, "account_limit", limit, "admin", admin)
	} else if h.Status != store.HostActive {
		// Re-read under the store's writer lock: an operator may have
		// killed or banned the host while the probe ran.
		refused := false
		h, err = r.st.UpdateHost(h.ID, func(h *store.Host) {
			if revivable(h.Status, admin) {
				h.Status = store.HostActive
			} else {
				refused = true
			}
		})
		if err != nil {
			return err
		}
		if refused {
			return ErrHostHeld
		}
	}
	r.hostsMu.Lock()
	defer r.hostsMu.Unlock()
	_, err = r.subscribeLocked(h)
	return err
}

// revivable reports whether a requestCrawl may make a host with status st
// active. The statuses the relay sets on its own (idle: no traffic or
// FutureCursor; offline: failed dials) resume on the host's next
// requestCrawl (spec §14.1). Throttled and any status added later are a
// decision of the operator or the relay's fault handling: only an admin
// lifts them. Banned needs an explicit unban, even for an admin.
func revivable(st store.HostStatus, admin bool) bool {
	switch st {
	case store.HostActive, store.HostIdle, store.HostOffline:
		return true
	case store.HostBanned:
		return false
	}
	return admin
}

// crawlGate is public requestCrawl's admission: the new-host budget of the
// current UTC day, persisted in the store so a restart does not refill it,
// and the count of describeServer probes in flight. Safe for concurrent
// use; the zero value is ready (the day is read from the store on first
// use).
type crawlGate struct {
	probes      atomic.Int64     // probes in flight, at most Config.MaxConcurrentProbes
	probesTotal *metrics.Counter // static after registerMetrics

	mu     sync.Mutex
	loaded bool           // day was read from the store (guarded by mu)
	day    store.CrawlDay // this UTC day's count (guarded by mu)
}

// registerMetrics creates the gate's series on set.
func (g *crawlGate) registerMetrics(set *metrics.Set, r *Relay) {
	g.probesTotal = set.NewCounter("relay_crawl_probes_total")
	set.NewGauge("relay_crawl_new_hosts_today", func() float64 { return float64(r.NewHostsToday()) })
}

// dayLocked returns the budget counter rolled over to today.
// REQUIRES: g.mu held.
func (g *crawlGate) dayLocked(r *Relay) (store.CrawlDay, error) {
	if !g.loaded {
		d, err := r.st.CrawlDay()
		if err != nil {
			return store.CrawlDay{}, err
		}
		g.day, g.loaded = d, true
	}
	today := uint32(r.now().Unix() / 86400)
	if g.day.Day != today {
		g.day = store.CrawlDay{Day: today}
	}
	return g.day, nil
}

// budgetLeft reports whether today's new-host budget has room; the probe
// runs only then. A store read error counts as no room.
func (g *crawlGate) budgetLeft(r *Relay) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	d, err := g.dayLocked(r)
	if err != nil {
		r.log.Warn("requestCrawl: cannot read the new-host counter", "err", err)
		return false
	}
	return int(d.Count) < r.cfg.NewHostsPerDay
}

// takeSlot counts one new host against today's budget and persists the
// count before the host is created: a crash in between loses a slot, never
// hands one out twice.
func (g *crawlGate) takeSlot(r *Relay) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	d, err := g.dayLocked(r)
	if err != nil {
		return err
	}
	if int(d.Count) >= r.cfg.NewHostsPerDay {
		return ErrNewHostLimit
	}
	d.Count++
	if err := r.st.SetCrawlDay(d); err != nil {
		return err
	}
	g.day = d
	return nil
}

// NewHostsToday returns how many hosts public requestCrawl added during the
// current UTC day.
func (r *Relay) NewHostsToday() int {
	g := &r.crawls
	g.mu.Lock()
	defer g.mu.Unlock()
	d, err := g.dayLocked(r)
	if err != nil {
		return 0
	}
	return int(d.Count)
}

// probe asks the host's describeServer (http:// for development hosts),
// with at most Config.MaxConcurrentProbes probes in flight.
func (r *Relay) probe(ctx context.Context, name string) error {
	g := &r.crawls
	if g.probes.Add(1) > int64(r.cfg.MaxConcurrentProbes) {
		g.probes.Add(-1)
		return ErrProbesBusy
	}
	defer g.probes.Add(-1)
	g.probesTotal.Inc()
	scheme := "https"
	if syntax.PlaintextHost(name) {
		scheme = "http"
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+name+"/xrpc/com.atproto.server.describeServer", nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrHostNotFound, err)
	}
	resp, err := r.probeHTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHostNotFound, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: describeServer answered %d", ErrHostNotFound, resp.StatusCode)
	}
	return nil
}

// newProbeClient is the default client of the describeServer probe: it
// dials public addresses only (loopback too when allowLoopback, the
// development switch), checked on the address actually dialed, so DNS
// cannot point it inward; no proxy, no redirects, small response headers.
func newProbeClient(timeout time.Duration, allowLoopback bool) *http.Client {
	return netguard.NewClient(netguard.Options{
		Policy:      netguard.Policy{AllowLoopback: allowLoopback},
		DialTimeout: timeout, TLSHandshakeTimeout: timeout, ResponseHeaderTimeout: timeout, Timeout: timeout,
		MaxResponseHeaderBytes: 16 << 10,
	})
}

// resubscribe starts every host the store lists as active (at start-up,
// from their persisted cursors).
func (r *Relay) resubscribe() error {
	r.hostsMu.Lock()
	defer r.hostsMu.Unlock()
	after := store.HostNone
	for {
		page := r.st.ListHosts(after, 1000)
		if len(page) == 0 {
			return nil
		}
		for _, h := range page {
			after = h.ID
			if h.Status != store.HostActive {
				continue
			}
			if _, err := r.subscribeLocked(h); err != nil {
				r.log.Warn("cannot resubscribe host", "host", h.Hostname, "err", err)
			}
		}
	}
}

// bootstrap seeds an empty host table from a seed relay's listHosts.
func (r *Relay) bootstrap(ctx context.Context) error {
	if r.cfg.SeedHostsURL == "" || len(r.st.ListHosts(store.HostNone, 1)) > 0 {
		return nil
	}
	base := strings.TrimSuffix(r.cfg.SeedHostsURL, "/")
	cursor, added := "", 0
	for page := 0; page < 1000; page++ {
		u := base + "/xrpc/com.atproto.sync.listHosts?limit=1000"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		var out struct {
			Cursor string `json:"cursor"`
			Hosts  []struct {
				Hostname string `json:"hostname"`
				Status   string `json:"status"`
			} `json:"hosts"`
		}
		if err := r.getJSON(ctx, u, &out); err != nil {
			return fmt.Errorf("relay: bootstrap from %s: %w", base, err)
		}
		for _, h := range out.Hosts {
			if h.Status != "" && h.Status != store.HostActive.String() {
				continue
			}
			name, err := syntax.NormalizeHost(h.Hostname, false)
			if err != nil || r.st.IsBanned(name) {
				continue
			}
			limit, trusted := r.cfg.DefaultAccountLimit, r.isTrusted(name)
			if trusted {
				limit = r.cfg.TrustedAccountLimit
			}
			sh, err := r.st.CreateHost(store.NewHost{Hostname: name, Status: store.HostActive, Trusted: trusted, AccountLimit: limit})
			if err != nil {
				continue
			}
			r.hostsMu.Lock()
			_, err = r.subscribeLocked(sh)
			r.hostsMu.Unlock()
			if err == nil {
				added++
			}
		}
		if out.Cursor == "" || len(out.Hosts) == 0 {
			break
		}
		cursor = out.Cursor
	}
	r.log.Info("bootstrapped hosts from seed relay", "seed", base, "hosts", added)
	return nil
}

func (r *Relay) getJSON(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v)
}

// hostFor returns the live state of a stored host id (nil if not subscribed).
func (r *Relay) hostFor(id store.HostID) *hostState {
	r.hostsMu.Lock()
	defer r.hostsMu.Unlock()
	return r.hostsByID[id]
}

// BanHost bans a host: it is unsubscribed and refused by requestCrawl.
func (r *Relay) BanHost(hostname string) error {
	h, ok := r.st.HostByName(hostname)
	if !ok {
		return ErrUnknownHost
	}
	if _, err := r.st.UpdateHost(h.ID, func(h *store.Host) { h.Status = store.HostBanned }); err != nil {
		return err
	}
	r.dropHost(hostname)
	return nil
}

// UnbanHost lifts a host ban; the host is resubscribed from its cursor.
func (r *Relay) UnbanHost(hostname string) error {
	h, ok := r.st.HostByName(hostname)
	if !ok {
		return ErrUnknownHost
	}
	h, err := r.st.UpdateHost(h.ID, func(h *store.Host) { h.Status = store.HostActive })
	if err != nil {
		return err
	}
	r.hostsMu.Lock()
	defer r.hostsMu.Unlock()
	_, err = r.subscribeLocked(h)
	return err
}

// BanDomain bans a domain and every host under it.
func (r *Relay) BanDomain(domain string) error {
	if err := r.st.BanDomain(strings.ToLower(domain)); err != nil {
		return err
	}
	r.hostsMu.Lock()
	var victims []string
	for name := range r.hosts {
		if r.st.IsBanned(name) {
			victims = append(victims, name)
		}
	}
	r.hostsMu.Unlock()
	for _, v := range victims {
		r.dropHost(v)
	}
	return nil
}

// UnbanDomain lifts a domain ban (hosts come back on their next requestCrawl).
func (r *Relay) UnbanDomain(domain string) error { return r.st.UnbanDomain(strings.ToLower(domain)) }

// KillUpstream disconnects a host without banning it. The host is marked
// throttled (held by the relay): its own requestCrawl is refused
// (ErrHostHeld) and only an admin requestCrawl brings it back.
func (r *Relay) KillUpstream(hostname string) error {
	h, ok := r.st.HostByName(hostname)
	if !ok {
		return ErrUnknownHost
	}
	if _, err := r.st.UpdateHost(h.ID, func(h *store.Host) { h.Status = store.HostThrottled }); err != nil {
		return err
	}
	r.dropHost(hostname)
	return nil
}

func (r *Relay) dropHost(name string) {
	r.hostsMu.Lock()
	hs := r.hosts[name]
	delete(r.hosts, name)
	if hs != nil {
		delete(r.hostsByID, hs.id)
	}
	r.hostsMu.Unlock()
	if hs != nil {
		r.loop.Remove(hs.up.Load())
	}
}

// ResetCursor forgets a host's cursor and reconnects it live.
func (r *Relay) ResetCursor(hostname string) error {
	h, ok := r.st.HostByName(hostname)
	if !ok {
		return ErrUnknownHost
	}
	r.hostsMu.Lock()
	hs := r.hosts[hostname]
	r.hostsMu.Unlock()
	if hs != nil {
		hs.tr.reset(0)
	}
	if _, err := r.st.UpdateHost(h.ID, func(h *store.Host) { h.Cursor = 0 }); err != nil {
		return err
	}
	if hs != nil {
		r.loop.Reconnect(hs.up.Load(), -1)
	}
	return nil
}

// HostInfo is the live view of one host for the admin API.
type HostInfo struct {
	store.Host
	Connected   bool
	Paused      bool
	Outstanding int64
	InFlightLow int64 // low-water cursor in memory (≥ the persisted one)
}

// Hosts lists stored hosts with their live connection state.
func (r *Relay) Hosts() []HostInfo {
	var out []HostInfo
	after := store.HostNone
	for {
		page := r.st.ListHosts(after, 1000)
		if len(page) == 0 {
			return out
		}
		for _, h := range page {
			after = h.ID
			hi := HostInfo{Host: h}
			if hs := r.hostFor(h.ID); hs != nil {
				if up := hs.up.Load(); up != nil {
					hi.Connected, hi.Paused, hi.Outstanding = up.Connected(), up.Paused(), up.Outstanding()
				}
				hi.InFlightLow = hs.tr.lowWater()
			}
			out = append(out, hi)
		}
	}
}
