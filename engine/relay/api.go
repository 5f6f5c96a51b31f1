package relay

import "context"

// The host half of the admin API: thin delegates to the host stage
// (hostTable, hosts.go), so the Relay's public surface stays in one place.

// RequestCrawl is the public com.atproto.sync.requestCrawl (spec §14.3).
func (r *Relay) RequestCrawl(ctx context.Context, hostname string) error {
	return r.hosts.crawl(ctx, hostname, false)
}

// AdminRequestCrawl is requestCrawl for operators: no daily limit, and it
// revives a host held by the operator (KillUpstream). A banned host still
// needs UnbanHost.
func (r *Relay) AdminRequestCrawl(ctx context.Context, hostname string) error {
	return r.hosts.crawl(ctx, hostname, true)
}

// SetCrawlEnabled switches public requestCrawl on or off.
func (r *Relay) SetCrawlEnabled(on bool) { r.hosts.publicCrawl.Store(on) }

// CrawlEnabled reports whether public requestCrawl is on.
func (r *Relay) CrawlEnabled() bool { return r.hosts.publicCrawl.Load() }

// NewHostsToday returns how many hosts public requestCrawl added during the
// current UTC day.
func (r *Relay) NewHostsToday() int { return r.hosts.newHostsToday() }

// BanHost bans a host: it is unsubscribed and refused by requestCrawl.
func (r *Relay) BanHost(hostname string) error { return r.hosts.ban(hostname) }

// UnbanHost lifts a host ban; the host is resubscribed from its cursor.
func (r *Relay) UnbanHost(hostname string) error { return r.hosts.unban(hostname) }

// BanDomain bans a domain and every host under it.
func (r *Relay) BanDomain(domain string) error { return r.hosts.banDomain(domain) }

// UnbanDomain lifts a domain ban (hosts come back on their next requestCrawl).
func (r *Relay) UnbanDomain(domain string) error { return r.hosts.unbanDomain(domain) }

// KillUpstream disconnects a host without banning it. The host is marked
// throttled (held by the relay): its own requestCrawl is refused
// (ErrHostHeld) and only an admin requestCrawl brings it back.
func (r *Relay) KillUpstream(hostname string) error { return r.hosts.kill(hostname) }

// ResetCursor forgets a host's cursor and reconnects it live.
func (r *Relay) ResetCursor(hostname string) error { return r.hosts.resetCursor(hostname) }

// Hosts lists stored hosts with their live connection state.
func (r *Relay) Hosts() []HostInfo { return r.hosts.list() }
