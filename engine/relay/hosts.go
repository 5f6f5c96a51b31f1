package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/engine/atproto/syntax"
	"github.com/atrelay/relay/engine/netguard"
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
	// ErrHostCapacity: Config.MaxHosts hosts are subscribed, all the
	// memory budget's hosts share holds. It wraps ErrNewHostLimit (the
	// public API answers 429): capacity frees when hosts go idle, are
	// killed or banned, or the operator raises the budget.
	ErrHostCapacity = fmt.Errorf("%w: the relay holds as many hosts as its memory budget allows", ErrNewHostLimit)
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

// hostTable is the host stage: the registry of subscribed hosts,
// requestCrawl admission (crawlGate), bans and kills, per-host limits,
// panic quarantine (faults.go) and the top-talker series (hosttop.go).
// Safe for concurrent use: admin calls, the Sink (quarantine, cursor
// resets), workers (lookup) and the host-metrics goroutine all reach it.
type hostTable struct {
	// Static after newHostTable; loop is set by New before any host is
	// subscribed (the loop needs the Sink, which needs the table).
	cfg       *Config // the relay's, read-only
	st        *store.Store
	log       *slog.Logger
	m         *metricsSet
	now       func() time.Time
	http      *http.Client // seed relay (bootstrap)
	probeHTTP *http.Client // requestCrawl describeServer probes
	loop      *upstream.Loop

	publicCrawl atomic.Bool
	crawls      crawlGate // public requestCrawl admission; its own lock
	top         hostTop   // owned by the host-metrics goroutine

	mu     sync.Mutex
	byName map[string]*hostState       // subscribed hosts by name (guarded by mu)
	byID   map[store.HostID]*hostState // the same by id (guarded by mu)
}

// newHostTable builds the table; New sets loop before subscribing hosts.
func newHostTable(cfg *Config, d Deps, probeHTTP *http.Client, m *metricsSet) *hostTable {
	ht := &hostTable{
		cfg: cfg, st: d.Store, log: d.Logger, m: m, now: d.Now, http: d.HTTPClient, probeHTTP: probeHTTP,
		byName: make(map[string]*hostState),
		byID:   make(map[store.HostID]*hostState),
	}
	ht.publicCrawl.Store(!cfg.DisablePublicCrawl)
	ht.crawls.perDay = cfg.NewHostsPerDay
	ht.crawls.registerMetrics(d.Metrics, ht)
	return ht
}

// named returns the live state of a subscribed host (nil if none).
func (ht *hostTable) named(name string) *hostState {
	ht.mu.Lock()
	defer ht.mu.Unlock()
	return ht.byName[name]
}

// count returns how many hosts are subscribed.
func (ht *hostTable) count() int {
	ht.mu.Lock()
	defer ht.mu.Unlock()
	return len(ht.byName)
}

// subscribeLocked starts reading a host. REQUIRES: ht.mu held.
func (ht *hostTable) subscribeLocked(h store.Host) (*hostState, error) {
	if hs := ht.byName[h.Hostname]; hs != nil {
		return hs, nil
	}
	if len(ht.byName) >= ht.cfg.MaxHosts {
		ht.m.hostCapacityRefusals.Inc()
		return nil, ErrHostCapacity
	}
	hs := &hostState{id: h.ID, name: h.Hostname, insecure: syntax.PlaintextHost(h.Hostname)}
	hs.trusted.Store(h.Trusted)
	hs.accountLimit.Store(h.AccountLimit)
	hs.accounts.Store(int64(h.AccountCount))
	hs.tr.reset(int64(h.Cursor))
	hs.rate.init(ht.rateFor(hs), ht.now())
	up, err := ht.loop.Add(h.Hostname, upstream.HostOptions{Insecure: hs.insecure, Value: hs})
	if err != nil {
		return nil, err
	}
	hs.up.Store(up)
	ht.byName[h.Hostname] = hs
	ht.byID[h.ID] = hs
	return hs, nil
}

// persistCursor persists a host's reset cursor.
func (ht *hostTable) persistCursor(hs *hostState) {
	cursor := uint64(hs.q.cap(hs.tr.lowWater()))
	if h, ok := ht.st.GetHost(hs.id); ok && h.Cursor == cursor {
		// Already stored: a host answering FutureCursor on every connection
		// must not cost a store write (and an fsync) per attempt.
		return
	}
	if _, err := ht.st.UpdateHost(hs.id, func(h *store.Host) { h.Cursor = cursor }); err != nil {
		ht.log.Warn("cannot persist host cursor", "host", hs.name, "err", err)
	}
}

// rateFor is the host's event budget per second (spec §14.4, REF numbers).
func (ht *hostTable) rateFor(hs *hostState) float64 {
	if hs.trusted.Load() {
		return ht.cfg.TrustedEventsPerSecond
	}
	return ht.cfg.EventsPerSecond + float64(hs.accountLimit.Load())/1000
}

// isTrusted matches hostname against the trusted patterns: "*.suffix"
// matches any subdomain of suffix, "name:*" matches name on any port (so
// "localhost:*" trusts every development host, for benchmarks with many
// local hosts), anything else matches exactly.
func (ht *hostTable) isTrusted(hostname string) bool {
	for _, p := range ht.cfg.TrustedDomains {
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

// crawl is requestCrawl (spec §14.3) in the order that spends least on a
// hostile caller: every check that needs no network comes before the
// describeServer probe, so a refused request costs no outbound traffic.
func (ht *hostTable) crawl(ctx context.Context, raw string, admin bool) error {
	if !admin && !ht.publicCrawl.Load() {
		return ErrCrawlDisabled
	}
	name, err := syntax.NormalizeHost(raw, ht.cfg.AllowInsecureHosts)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadHostname, err)
	}
	if ht.st.IsBanned(name) {
		return ErrHostBanned
	}
	h, known := ht.st.HostByName(name)
	if known && !revivable(h.Status, admin) {
		if h.Status == store.HostBanned {
			return ErrHostBanned
		}
		return ErrHostHeld
	}
	if ht.named(name) != nil {
		return nil
	}
	if ht.count() >= ht.cfg.MaxHosts {
		// Before the probe and before the store records the host: a host
		// the relay cannot hold costs it nothing.
		ht.m.hostCapacityRefusals.Inc()
		return ErrHostCapacity
	}
	newHost := !known && !admin
	if newHost && !ht.crawls.budgetLeft(ht) {
		return ErrNewHostLimit
	}
	if err := ht.probe(ctx, name); err != nil {
		return err
	}
	if !known {
		if newHost {
			if err := ht.crawls.takeSlot(ht); err != nil {
				return err
			}
		}
		limit := ht.cfg.DefaultAccountLimit
		trusted := ht.isTrusted(name)
		if trusted {
			limit = ht.cfg.TrustedAccountLimit
		}
		h, err = ht.st.CreateHost(store.NewHost{Hostname: name, Status: store.HostActive, Trusted: trusted, AccountLimit: limit})
		if errors.Is(err, store.ErrHostExists) {
			h, _ = ht.st.HostByName(name)
		} else if err != nil {
			return err
		}
		ht.log.Info("new host", "host", name, "trusted", trusted, "account_limit", limit, "admin", admin)
	} else if h.Status != store.HostActive {
		// Re-read under the store's writer lock: an operator may have
		// killed or banned the host while the probe ran.
		refused := false
		h, err = ht.st.UpdateHost(h.ID, func(h *store.Host) {
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
	ht.mu.Lock()
	defer ht.mu.Unlock()
	_, err = ht.subscribeLocked(h)
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
	perDay int            // new hosts a day (Config.NewHostsPerDay, changed by SetNewHostsPerDay; guarded by mu)
	loaded bool           // day was read from the store (guarded by mu)
	day    store.CrawlDay // this UTC day's count (guarded by mu)
}

// registerMetrics creates the gate's series on set.
func (g *crawlGate) registerMetrics(set *metrics.Set, ht *hostTable) {
	g.probesTotal = set.NewCounter("relay_crawl_probes_total")
	set.NewGauge("relay_crawl_new_hosts_today", func() float64 { return float64(ht.newHostsToday()) })
}

// limit returns the new hosts a day public requestCrawl may add.
func (g *crawlGate) limit() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.perDay
}

// setLimit changes that bound (until the next restart).
func (g *crawlGate) setLimit(n int) {
	g.mu.Lock()
	g.perDay = n
	g.mu.Unlock()
}

// dayLocked returns the budget counter rolled over to today.
// REQUIRES: g.mu held.
func (g *crawlGate) dayLocked(ht *hostTable) (store.CrawlDay, error) {
	if !g.loaded {
		d, err := ht.st.CrawlDay()
		if err != nil {
			return store.CrawlDay{}, err
		}
		g.day, g.loaded = d, true
	}
	today := uint32(ht.now().Unix() / 86400)
	if g.day.Day != today {
		g.day = store.CrawlDay{Day: today}
	}
	return g.day, nil
}

// budgetLeft reports whether today's new-host budget has room; the probe
// runs only then. A store read error counts as no room.
func (g *crawlGate) budgetLeft(ht *hostTable) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	d, err := g.dayLocked(ht)
	if err != nil {
		ht.log.Warn("requestCrawl: cannot read the new-host counter", "err", err)
		return false
	}
	return int(d.Count) < g.perDay
}

// takeSlot counts one new host against today's budget and persists the
// count before the host is created: a crash in between loses a slot, never
// hands one out twice.
func (g *crawlGate) takeSlot(ht *hostTable) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	d, err := g.dayLocked(ht)
	if err != nil {
		return err
	}
	if int(d.Count) >= g.perDay {
		return ErrNewHostLimit
	}
	d.Count++
	if err := ht.st.SetCrawlDay(d); err != nil {
		return err
	}
	g.day = d
	return nil
}

// newHostsToday is NewHostsToday (api.go).
func (ht *hostTable) newHostsToday() int {
	g := &ht.crawls
	g.mu.Lock()
	defer g.mu.Unlock()
	d, err := g.dayLocked(ht)
	if err != nil {
		return 0
	}
	return int(d.Count)
}

// probe asks the host's describeServer (http:// for development hosts),
// with at most Config.MaxConcurrentProbes probes in flight.
func (ht *hostTable) probe(ctx context.Context, name string) error {
	g := &ht.crawls
	if g.probes.Add(1) > int64(ht.cfg.MaxConcurrentProbes) {
		g.probes.Add(-1)
		return ErrProbesBusy
	}
	defer g.probes.Add(-1)
	g.probesTotal.Inc()
	scheme := "https"
	if syntax.PlaintextHost(name) {
		scheme = "http"
	}
	ctx, cancel := context.WithTimeout(ctx, ht.cfg.ProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+name+"/xrpc/com.atproto.server.describeServer", nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrHostNotFound, err)
	}
	resp, err := ht.probeHTTP.Do(req)
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
func (ht *hostTable) resubscribe() error {
	ht.mu.Lock()
	defer ht.mu.Unlock()
	after := store.HostNone
	overCapacity := 0
	for {
		page := ht.st.ListHosts(after, 1000)
		if len(page) == 0 {
			break
		}
		for _, h := range page {
			after = h.ID
			if h.Status != store.HostActive {
				continue
			}
			_, err := ht.subscribeLocked(h)
			switch {
			case errors.Is(err, ErrHostCapacity):
				overCapacity++ // one line for all of them, below
			case err != nil:
				ht.log.Warn("cannot resubscribe host", "host", h.Hostname, "err", err)
			}
		}
	}
	if overCapacity > 0 {
		// The hosts stay active in the store: a larger budget (or fewer
		// hosts) subscribes them at the next start.
		ht.log.Warn("active hosts left unsubscribed: the memory budget's hosts share is full",
			"unsubscribed", overCapacity, "max_hosts", ht.cfg.MaxHosts)
	}
	return nil
}

// bootstrap seeds an empty host table from a seed relay's listHosts.
func (ht *hostTable) bootstrap(ctx context.Context) error {
	if ht.cfg.SeedHostsURL == "" || len(ht.st.ListHosts(store.HostNone, 1)) > 0 {
		return nil
	}
	base := strings.TrimSuffix(ht.cfg.SeedHostsURL, "/")
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
		if err := ht.getJSON(ctx, u, &out); err != nil {
			return fmt.Errorf("relay: bootstrap from %s: %w", base, err)
		}
		for _, h := range out.Hosts {
			if h.Status != "" && h.Status != store.HostActive.String() {
				continue
			}
			name, err := syntax.NormalizeHost(h.Hostname, false)
			if err != nil || ht.st.IsBanned(name) {
				continue
			}
			if ht.count() >= ht.cfg.MaxHosts {
				ht.m.hostCapacityRefusals.Inc()
				ht.log.Warn("seed relay lists more hosts than the memory budget's hosts share holds; the rest are left out",
					"seed", base, "hosts", added, "max_hosts", ht.cfg.MaxHosts)
				return nil
			}
			limit, trusted := ht.cfg.DefaultAccountLimit, ht.isTrusted(name)
			if trusted {
				limit = ht.cfg.TrustedAccountLimit
			}
			sh, err := ht.st.CreateHost(store.NewHost{Hostname: name, Status: store.HostActive, Trusted: trusted, AccountLimit: limit})
			if err != nil {
				continue
			}
			ht.mu.Lock()
			_, err = ht.subscribeLocked(sh)
			ht.mu.Unlock()
			if err == nil {
				added++
			}
		}
		if out.Cursor == "" || len(out.Hosts) == 0 {
			break
		}
		cursor = out.Cursor
	}
	ht.log.Info("bootstrapped hosts from seed relay", "seed", base, "hosts", added)
	return nil
}

func (ht *hostTable) getJSON(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := ht.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v)
}

// lookup returns the live state of a stored host id (nil if not subscribed).
func (ht *hostTable) lookup(id store.HostID) *hostState {
	ht.mu.Lock()
	defer ht.mu.Unlock()
	return ht.byID[id]
}

// ban is BanHost (api.go).
func (ht *hostTable) ban(hostname string) error {
	h, ok := ht.st.HostByName(hostname)
	if !ok {
		return ErrUnknownHost
	}
	if _, err := ht.st.UpdateHost(h.ID, func(h *store.Host) { h.Status = store.HostBanned }); err != nil {
		return err
	}
	ht.drop(hostname)
	return nil
}

// unban is UnbanHost (api.go).
func (ht *hostTable) unban(hostname string) error {
	h, ok := ht.st.HostByName(hostname)
	if !ok {
		return ErrUnknownHost
	}
	h, err := ht.st.UpdateHost(h.ID, func(h *store.Host) { h.Status = store.HostActive })
	if err != nil {
		return err
	}
	ht.mu.Lock()
	defer ht.mu.Unlock()
	_, err = ht.subscribeLocked(h)
	return err
}

// banDomain is BanDomain (api.go).
func (ht *hostTable) banDomain(domain string) error {
	if err := ht.st.BanDomain(strings.ToLower(domain)); err != nil {
		return err
	}
	ht.mu.Lock()
	var victims []string
	for name := range ht.byName {
		if ht.st.IsBanned(name) {
			victims = append(victims, name)
		}
	}
	ht.mu.Unlock()
	for _, v := range victims {
		ht.drop(v)
	}
	return nil
}

// unbanDomain is UnbanDomain (api.go).
func (ht *hostTable) unbanDomain(domain string) error {
	return ht.st.UnbanDomain(strings.ToLower(domain))
}

// kill is KillUpstream (api.go).
func (ht *hostTable) kill(hostname string) error {
	h, ok := ht.st.HostByName(hostname)
	if !ok {
		return ErrUnknownHost
	}
	if _, err := ht.st.UpdateHost(h.ID, func(h *store.Host) { h.Status = store.HostThrottled }); err != nil {
		return err
	}
	ht.drop(hostname)
	return nil
}

func (ht *hostTable) drop(name string) {
	ht.mu.Lock()
	hs := ht.byName[name]
	delete(ht.byName, name)
	if hs != nil {
		delete(ht.byID, hs.id)
	}
	ht.mu.Unlock()
	if hs != nil {
		ht.loop.Remove(hs.up.Load())
	}
}

// resetCursor is ResetCursor (api.go).
func (ht *hostTable) resetCursor(hostname string) error {
	h, ok := ht.st.HostByName(hostname)
	if !ok {
		return ErrUnknownHost
	}
	hs := ht.named(hostname)
	if hs != nil {
		hs.tr.reset(0)
	}
	if _, err := ht.st.UpdateHost(h.ID, func(h *store.Host) { h.Cursor = 0 }); err != nil {
		return err
	}
	if hs != nil {
		ht.loop.Reconnect(hs.up.Load(), -1)
	}
	return nil
}

// setLimits stores a host's account limit and trust, applies them to the
// live host (its rate too) and returns the host's id and how many more
// accounts its limit now admits (0 when it is not subscribed).
func (ht *hostTable) setLimits(hostname string, accountLimit uint64, trusted bool) (store.HostID, int64, error) {
	h, ok := ht.st.HostByName(hostname)
	if !ok {
		return store.HostNone, 0, ErrUnknownHost
	}
	if _, err := ht.st.UpdateHost(h.ID, func(h *store.Host) { h.AccountLimit, h.Trusted = accountLimit, trusted }); err != nil {
		return store.HostNone, 0, err
	}
	hs := ht.lookup(h.ID)
	if hs == nil {
		return h.ID, 0, nil
	}
	hs.accountLimit.Store(accountLimit)
	hs.trusted.Store(trusted)
	hs.mu.Lock()
	hs.rate.init(ht.rateFor(hs), ht.now())
	hs.mu.Unlock()
	return h.ID, int64(accountLimit) - hs.accounts.Load(), nil
}

// HostInfo is the live view of one host for the admin API.
type HostInfo struct {
	store.Host
	Connected   bool
	Paused      bool
	Outstanding int64
	InFlightLow int64 // low-water cursor in memory (≥ the persisted one)
}

// list is Hosts (api.go).
func (ht *hostTable) list() []HostInfo {
	var out []HostInfo
	after := store.HostNone
	for {
		page := ht.st.ListHosts(after, 1000)
		if len(page) == 0 {
			return out
		}
		for _, h := range page {
			after = h.ID
			hi := HostInfo{Host: h}
			if hs := ht.lookup(h.ID); hs != nil {
				if up := hs.up.Load(); up != nil {
					hi.Connected, hi.Paused, hi.Outstanding = up.Connected(), up.Paused(), up.Outstanding()
				}
				hi.InFlightLow = hs.tr.lowWater()
			}
			out = append(out, hi)
		}
	}
}

// HostStateBytes is what one subscribed host costs the relay and the
// upstream loop before any connection: the relay's hostState with its
// table entries and in-flight tracker, the loop's Host and its clock and
// queue entries. A connection's own cost (socket, gobwas/ws, crypto/tls
// buffers) is upstream's per-host figure; a memory budget's hosts share
// is divided by the sum of the two (cmd/relay). Measured by
// TestHostStateBytes: about 620 bytes on go1.26 linux/amd64, plus what
// the in-flight tracker keeps once a host has had many frames in flight
// (room for trackerKeepCap seqs, 576 bytes), so 2 KiB leaves a margin.
const HostStateBytes = 2 << 10
