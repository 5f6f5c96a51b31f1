package identity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/engine/netguard"
	"github.com/atrelay/relay/store"
)

// Defaults of the resolution limits in Config (the settings table of relay
// serve shows these).
const (
	DefaultPLCMaxInFlight    = 128
	DefaultPLCRequestTimeout = 10 * time.Second
	DefaultPLCMaxRate        = 1000
	DefaultPLCRetries        = 4
	DefaultPLCRetryBackoff   = 250 * time.Millisecond
	DefaultPLCMaxRetryAfter  = 30 * time.Second
	DefaultPLCHedgeAfter     = 750 * time.Millisecond
	DefaultWebMaxInFlight    = 8
	DefaultWebMaxPerDomain   = 2
	DefaultWebRequestTimeout = 3 * time.Second
	DefaultDiskMaxAge        = 7 * 24 * time.Hour
	DefaultDiskMaxRows       = 20_000_000
)

// Config configures a Resolver. Zero fields take the documented default;
// zero never means "unlimited".
type Config struct {
	// PLCURL is the PLC directory base URL. Default "https://plc.directory".
	PLCURL string
	// AllowInsecureHosts is the development switch: did:web over plain http,
	// did:web with an explicit port (the spec allows one only for
	// localhost testing), and loopback destinations (never private ones)
	// for the PLC directory and did:web hosts, so tests and dev fleets on
	// 127.0.0.1 work. Default false: https on the default port, public
	// addresses only (engine/netguard).
	AllowInsecureHosts bool
	// PLCAllowPrivate lets the PLC directory be on a loopback or private
	// address: a mirror the operator runs on the local network. did:web
	// hosts never get this. Default false.
	PLCAllowPrivate bool
	// TTL is how long a resolved identity is served from cache. Default 24h.
	TTL time.Duration
	// NegativeTTL is how long a failed resolution is remembered. Default 1m.
	NegativeTTL time.Duration
	// MaxCacheBytes is the memory budget of the cache (the hot set when
	// Store is set), host table included; entries are evicted
	// (random-sample LRU) to stay within it. An identity costs about 75
	// bytes plus its handle. Default 512 MiB, which holds about 5
	// million identities.
	MaxCacheBytes int64
	// Store, when set, keeps resolved identities on disk across restarts
	// (see the package doc): a memory miss reads the store before asking
	// the network. The resolver must be closed before the store. Default
	// nil: memory only.
	Store *store.Store
	// DiskMaxAge is how long an identity row is kept and served: rows past
	// TTL are served while they are re-resolved in the background, rows
	// past DiskMaxAge are deleted and never served. Default 7 days.
	DiskMaxAge time.Duration
	// DiskMaxRows bounds the identity rows on disk (about 90 bytes each
	// once compacted, so the default is under 2 GB): above it new
	// identities are not written and the sweep deletes rows past TTL.
	// Default 20 million.
	DiskMaxRows int64
	// MaxHosts bounds the interned PDS host names (two generations of
	// MaxHosts/2; when one fills, hosts not used since the previous
	// rotation are dropped and their entries resolved again). Default
	// 100,000.
	MaxHosts int
	// PLCMaxInFlight bounds concurrent requests to the PLC directory, and
	// so the resolutions per second at PLCMaxInFlight ÷ the mean answer
	// time. Against a directory answering in 80 ms (p50) to 400 ms (p99)
	// 128 keep up with 600 new DIDs a second, where 32 fell behind at 230
	// (the pace, PLCMaxRate, is what keeps the directory's load in
	// check). Each costs an idle connection between bursts. Default 128.
	PLCMaxInFlight int
	// PLCRequestTimeout bounds one PLC request, body included. The first
	// attempt of a resolution gets a quarter of it (at most twice
	// PLCHedgeAfter while hedging is on), each retry twice the previous
	// quarter: a request the directory never answers (it happens) costs
	// little, and a directory that is slow across the board is still
	// waited for. Default 10s.
	PLCRequestTimeout time.Duration
	// PLCHedgeAfter is how long a PLC request may go unanswered before
	// its resolution sends a second request for the same DID, the hedge,
	// and takes whichever answers first (see hedge.go): a request the
	// directory never answers then costs about PLCHedgeAfter instead of
	// the attempt's timeout, and its account's host is not held that
	// long. At most one hedge per resolution; it takes a PLC token and a
	// turn in the pace, and is not sent while a 429 holds the pace down
	// or every token is busy. The default, 750 ms, is above the answer
	// time of all but about 1 % of requests (issue 16 models the
	// directory at 80 ms p50, 400 ms p99). 0 means the default, negative
	// turns hedging off.
	PLCHedgeAfter time.Duration
	// PLCMaxRate bounds the requests per second sent to the PLC directory.
	// The pace starts there, drops on every round of 429 answers and
	// climbs back slowly (see plcLimiter), so the relay settles just
	// under the directory's own limit. Default 1,000.
	PLCMaxRate float64
	// PLCRetries bounds the retries of one PLC resolution after a
	// transient failure (429, 5xx, timeout, transport error), each after
	// PLCRetryBackoff doubled per earlier retry (jittered, at most 8 s),
	// a 429 after its Retry-After instead. Default 4.
	PLCRetries int
	// PLCRetryBackoff is the wait before the first retry. Default 250ms.
	PLCRetryBackoff time.Duration
	// PLCMaxRetryAfter caps how long a 429's Retry-After pauses every PLC
	// request. Default 30s.
	PLCMaxRetryAfter time.Duration
	// WebMaxInFlight bounds concurrent did:web requests, separately from
	// PLC: did:web hosts are anyone's, and ones that never answer must
	// not delay did:plc accounts. Default 8.
	WebMaxInFlight int
	// WebMaxPerDomain bounds concurrent did:web requests to one domain
	// (the last two labels of the host, see webDomain), so one party's
	// subdomains cannot take every did:web slot. Default 2.
	WebMaxPerDomain int
	// WebRequestTimeout bounds one did:web resolution from the moment it
	// asks for a slot: waiting for the domain and did:web limits, then the
	// request, body included. Default 3s.
	WebRequestTimeout time.Duration
	// MaxDocBytes bounds a DID document body. Default 64 KiB.
	MaxDocBytes int64
	// Shards is the number of cache shards, rounded up to a power of two.
	// Default 256.
	Shards int
	// Metrics receives the resolver's metrics; nil creates a fresh Set
	// (see Resolver.Metrics). Names must not already exist in the set.
	Metrics *metrics.Set
	// Now is the clock, called on every Lookup; tests inject one to expire
	// entries. nil means wall time read by a ticker twice a second, because
	// time.Now costs about 290 ns on the project's VMs, a third of a hit.
	Now func() time.Time
	// UserAgent is sent with every request. Default "relay-identity".
	UserAgent string
}

func (c Config) withDefaults() Config {
	if c.PLCURL == "" {
		c.PLCURL = "https://plc.directory"
	}
	c.PLCURL = strings.TrimRight(c.PLCURL, "/")
	if c.TTL <= 0 {
		c.TTL = 24 * time.Hour
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = time.Minute
	}
	if c.MaxCacheBytes <= 0 {
		c.MaxCacheBytes = 512 << 20
	}
	if c.DiskMaxAge <= 0 {
		c.DiskMaxAge = DefaultDiskMaxAge
	}
	c.DiskMaxAge = max(c.DiskMaxAge, c.TTL)
	if c.DiskMaxRows <= 0 {
		c.DiskMaxRows = DefaultDiskMaxRows
	}
	if c.MaxHosts <= 0 {
		c.MaxHosts = 100_000
	}
	if c.PLCMaxInFlight <= 0 {
		c.PLCMaxInFlight = DefaultPLCMaxInFlight
	}
	if c.PLCRequestTimeout <= 0 {
		c.PLCRequestTimeout = DefaultPLCRequestTimeout
	}
	if !(c.PLCMaxRate > 0) {
		c.PLCMaxRate = DefaultPLCMaxRate
	}
	if c.PLCRetries <= 0 {
		c.PLCRetries = DefaultPLCRetries
	}
	if c.PLCRetryBackoff <= 0 {
		c.PLCRetryBackoff = DefaultPLCRetryBackoff
	}
	if c.PLCMaxRetryAfter <= 0 {
		c.PLCMaxRetryAfter = DefaultPLCMaxRetryAfter
	}
	if c.PLCHedgeAfter == 0 {
		c.PLCHedgeAfter = DefaultPLCHedgeAfter
	}
	if c.WebMaxInFlight <= 0 {
		c.WebMaxInFlight = DefaultWebMaxInFlight
	}
	if c.WebMaxPerDomain <= 0 {
		c.WebMaxPerDomain = DefaultWebMaxPerDomain
	}
	if c.WebRequestTimeout <= 0 {
		c.WebRequestTimeout = DefaultWebRequestTimeout
	}
	if c.MaxDocBytes <= 0 {
		c.MaxDocBytes = 64 << 10
	}
	if c.Shards <= 0 {
		c.Shards = 256
	}
	n := 1
	for n < c.Shards {
		n <<= 1
	}
	c.Shards = n
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
	if c.UserAgent == "" {
		c.UserAgent = "relay-identity"
	}
	return c
}

// Method indexes: per-method state lives in arrays indexed by these.
const (
	methodPLC = iota
	methodWeb
	numMethods
)

// method returns ref's method index.
func (ref *didRef) method() int {
	if ref.isPLC {
		return methodPLC
	}
	return methodWeb
}

// Resolver resolves DIDs to Identities through a memory-bounded cache.
// Concurrent lookups of one DID share a single resolution; PLC and
// did:web requests have separate concurrency limits, clients and timeouts
// (did:web also a per-domain limit), so a slow method never queues the
// other. PLC requests are paced by an adaptive rate limit and retried
// after transient failures. Failures are cached for NegativeTTL, transient
// PLC ones only for plcFailureTTL. Safe for concurrent use.
type Resolver struct {
	// Static after New.
	cfg     Config
	clients [numMethods]*http.Client
	sems    [numMethods]chan struct{} // request tokens: PLCMaxInFlight, WebMaxInFlight
	maxIn   [numMethods]int           // the sizes of sems
	domains domainLimiter             // did:web requests per domain
	plc     *plcLimiter               // pace of PLC requests
	cache   *cache
	disk    *disk // nil without Config.Store
	epoch   time.Time
	// maxRefreshes is maxRefreshes; tests lower it.
	maxRefreshes int
	ctx          context.Context // cancelled by Close
	cancel       context.CancelFunc
	wg           sync.WaitGroup // resolution goroutines

	mu struct {
		sync.Mutex
		flights map[string]*flight // guarded by mu; DID → resolution in progress
		// refreshes holds the resolutions Refresh started, not yet taken
		// by Reresolve: detached from flights and the cache until then.
		refreshes map[refreshKey]refresh // guarded by mu
		// unsent holds, per DID, the refresh whose request has not been
		// sent yet: later #identity events of the DID share it (Refresh).
		unsent map[string]*flight // guarded by mu
		// running counts flight goroutines not finished, by method,
		// refreshes included; refreshRunning counts the refreshes among
		// them. Prefetch and Refresh bound them. Guarded by mu.
		running, refreshRunning [numMethods]int
		lastSweep               uint32 // guarded by mu; cache clock of the last stale-refresh sweep
		closed                  bool   // guarded by mu
	}

	// purging counts Purges between their first step (memory) and their
	// last (the disk delete), and purgeGen counts finished ones: a row
	// read from disk is cached only if neither moved meanwhile, so a
	// Purge racing a disk read never leaves the purged identity cached.
	purging, purgeGen atomic.Int64

	inFlight [numMethods]atomic.Int64 // HTTP requests running, by method
	// coarseNow is the cache clock kept by the ticker goroutine when
	// Config.Now is nil (useTicker); written only by that goroutine.
	coarseNow atomic.Uint32
	useTicker bool // static

	// Metrics, registered in cfg.Metrics at New.
	hits, misses, negHits, coalesced, resolves *metrics.Counter
	prefetches                                 *metrics.Counter   // resolutions Prefetch started
	refreshed, refreshUsed, refreshShared      *metrics.Counter   // resolutions Refresh started; those Reresolve took; events that shared one
	resolveTime                                *metrics.Histogram // seconds per DID document request
	plcRetries, plcLimited                     *metrics.Counter   // PLC requests retried; PLC answers 429
	plcHedges, plcHedgeWins                    *metrics.Counter   // hedges sent (hedge.go); those whose answer was taken
	resolveErrs                                [numReasons]*metrics.Counter
}

// flight is one resolution in progress. id and err are written once by the
// resolving goroutine before done is closed and only read after.
type flight struct {
	done chan struct{}
	id   Identity
	err  error
	// finished is set by finish, before done is closed: from then on the
	// result is in id and err, and whoever adopts a detached flight must
	// store it in the cache itself. Guarded by Resolver.mu.
	finished bool
	refresh  bool // started by Refresh; static
	// useDisk lets the flight answer from a fresh disk row; set when it
	// starts unless it must fetch (Refresh, Reresolve, a stale row's
	// refresh) or a Purge is under way. Static.
	useDisk bool
	// fromDisk is set when the result came from a disk row (so it is not
	// written back); resolvedAt is when the result's document was
	// fetched, Unix seconds. Written by the resolving goroutine before
	// done is closed.
	fromDisk   bool
	resolvedAt int64
}

// New returns a Resolver; call Close to stop it.
func New(cfg Config) *Resolver {
	cfg = cfg.withDefaults()
	useTicker := cfg.Now == nil
	if useTicker {
		cfg.Now = time.Now
	}
	r := &Resolver{
		cfg:          cfg,
		useTicker:    useTicker,
		cache:        newCache(cfg.Shards, cfg.MaxCacheBytes, cfg.MaxHosts),
		epoch:        cfg.Now(),
		maxIn:        [numMethods]int{methodPLC: cfg.PLCMaxInFlight, methodWeb: cfg.WebMaxInFlight},
		domains:      domainLimiter{per: cfg.WebMaxPerDomain, m: make(map[string]*domainSlots)},
		plc:          newPLCLimiter(cfg.PLCMaxRate, cfg.PLCMaxRetryAfter),
		maxRefreshes: maxRefreshes,
	}
	for m := range numMethods {
		r.sems[m] = make(chan struct{}, r.maxIn[m])
	}
	// The PLC URL is the operator's, did:web hosts are anyone's: both
	// dial public addresses only unless told otherwise, but only the PLC
	// directory may be told it lives on the local network.
	dev := netguard.Policy{AllowLoopback: cfg.AllowInsecureHosts}
	plcPolicy := dev
	if cfg.PLCAllowPrivate {
		plcPolicy = netguard.Policy{AllowLoopback: true, AllowPrivate: true}
	}
	r.clients[methodPLC] = netguard.NewClient(netguard.Options{
		Policy:                plcPolicy,
		DialTimeout:           cfg.PLCRequestTimeout,
		TLSHandshakeTimeout:   cfg.PLCRequestTimeout,
		ResponseHeaderTimeout: cfg.PLCRequestTimeout,
		MaxConnsPerHost:       cfg.PLCMaxInFlight,
		MaxIdleConns:          cfg.PLCMaxInFlight,
		IdleConnTimeout:       90 * time.Second,
		Timeout:               cfg.PLCRequestTimeout,
	})
	r.clients[methodWeb] = netguard.NewClient(netguard.Options{
		Policy:                dev,
		DialTimeout:           cfg.WebRequestTimeout,
		TLSHandshakeTimeout:   cfg.WebRequestTimeout,
		ResponseHeaderTimeout: cfg.WebRequestTimeout,
		MaxConnsPerHost:       cfg.WebMaxPerDomain,
		MaxIdleConns:          cfg.WebMaxInFlight,
		IdleConnTimeout:       30 * time.Second,
		Timeout:               cfg.WebRequestTimeout,
	})
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.mu.flights = make(map[string]*flight)
	r.mu.refreshes = make(map[refreshKey]refresh)
	r.mu.unsent = make(map[string]*flight)
	r.registerMetrics()
	if cfg.Store != nil {
		r.disk = newDisk(&r.cfg, r.unixNow)
		r.disk.start()
	}
	if useTicker {
		r.wg.Add(1)
		go r.tick()
	}
	return r
}

// tick refreshes coarseNow until Close.
func (r *Resolver) tick() {
	defer r.wg.Done()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.coarseNow.Store(r.wallNow())
		case <-r.ctx.Done():
			return
		}
	}
}

func (r *Resolver) registerMetrics() {
	s := r.cfg.Metrics
	r.hits = s.NewCounter("relay_identity_cache_hits_total")
	r.misses = s.NewCounter("relay_identity_cache_misses_total")
	r.negHits = s.NewCounter("relay_identity_cache_negative_hits_total")
	r.coalesced = s.NewCounter("relay_identity_coalesced_lookups_total")
	r.resolves = s.NewCounter("relay_identity_resolves_total")
	r.prefetches = s.NewCounter("relay_identity_prefetches_total")
	r.refreshed = s.NewCounter("relay_identity_refreshes_total")
	r.refreshUsed = s.NewCounter("relay_identity_refreshes_used_total")
	r.refreshShared = s.NewCounter("relay_identity_refreshes_shared_total")
	r.resolveTime = s.NewHistogram("relay_identity_resolve_seconds")
	r.plcRetries = s.NewCounter("relay_identity_plc_retries_total")
	r.plcLimited = s.NewCounter("relay_identity_plc_rate_limited_total")
	s.NewGauge("relay_identity_plc_rate", r.plc.current)
	s.NewGauge("relay_identity_plc_unavailable", func() float64 {
		if r.plc.unavailable() {
			return 1
		}
		return 0
	})
	for reason := ReasonNone + 1; reason < numReasons; reason++ {
		r.resolveErrs[reason] = s.NewCounter(fmt.Sprintf(`relay_identity_resolve_errors_total{reason=%q}`, reason.String()))
	}
	s.NewGauge("relay_identity_inflight", func() float64 {
		return float64(r.inFlight[methodPLC].Load() + r.inFlight[methodWeb].Load())
	})
	s.NewGauge("relay_identity_web_inflight", func() float64 { return float64(r.inFlight[methodWeb].Load()) })
	s.NewGauge("relay_identity_cache_entries", func() float64 { return float64(r.cache.entries.Load()) })
	s.NewGauge("relay_identity_cache_bytes", func() float64 {
		_, hb := r.cache.hosts.stats()
		return float64(r.cache.bytes.Load() + hb)
	})
	s.NewGauge("relay_identity_cache_evictions", func() float64 { return float64(r.cache.evictions.Load()) })
	s.NewGauge("relay_identity_hosts", func() float64 {
		n, _ := r.cache.hosts.stats()
		return float64(n)
	})
	s.NewGauge("relay_identity_host_table_rotations", func() float64 { return float64(r.cache.hosts.rotations.Load()) })
	r.plcHedges = s.NewCounter("relay_identity_plc_hedges_total")
	r.plcHedgeWins = s.NewCounter("relay_identity_plc_hedge_wins_total")
}

// Metrics returns the set the resolver's metrics live in.
func (r *Resolver) Metrics() *metrics.Set { return r.cfg.Metrics }

// Stats is a snapshot of the cache size.
type Stats struct {
	Entries       int64 // cached identities and failures
	Bytes         int64 // accounted bytes, host table included; at most MaxCacheBytes
	Evictions     uint64
	Hosts         int    // host names held, both generations
	HostRotations uint64 // host table generations dropped
}

// Stats returns the current cache size.
func (r *Resolver) Stats() Stats {
	n, hb := r.cache.hosts.stats()
	return Stats{Entries: r.cache.entries.Load(), Bytes: r.cache.bytes.Load() + hb,
		Evictions: r.cache.evictions.Load(), Hosts: n, HostRotations: r.cache.hosts.rotations.Load()}
}

// now returns the cache clock: seconds since the resolver started.
func (r *Resolver) now() uint32 {
	if r.useTicker {
		return r.coarseNow.Load()
	}
	return r.wallNow()
}

// unixNow returns the cache clock as Unix seconds.
func (r *Resolver) unixNow() int64 { return r.epoch.Unix() + int64(r.now()) }

// clockAt converts Unix seconds to the cache clock, clamped at 0.
func (r *Resolver) clockAt(unix int64) uint32 {
	d := unix - r.epoch.Unix()
	if d < 0 {
		return 0
	}
	return uint32(min(d, 1<<32-1))
}

func (r *Resolver) wallNow() uint32 {
	d := r.cfg.Now().Sub(r.epoch)
	if d < 0 {
		return 0
	}
	return uint32(d / time.Second)
}

// Lookup returns the identity of did, from cache or by resolving it. A
// cached failure returns its reason's sentinel (errors.Is(err, ErrNotFound)
// …); a fresh one a *ResolveError. ctx bounds only this caller's wait: the
// shared HTTP request runs under the resolver's own timeout. A cache hit
// does not allocate.
func (r *Resolver) Lookup(ctx context.Context, did string) (Identity, error) {
	ref, err := r.parse(did)
	if err != nil {
		return Identity{}, err
	}
	if id, ok, err := r.cached(&ref, did); ok {
		if err != nil {
			r.negHits.Inc()
		} else {
			r.hits.Inc()
		}
		return id, err
	}
	if r.disk != nil {
		if id, ok := r.fromDisk(&ref, did, true); ok {
			return id, nil
		}
	}
	r.misses.Inc()
	return r.resolve(ctx, &ref, did, false, false)
}

// Retry is Lookup for a caller that already got a transient failure for
// did and waited: a cached transient PLC failure (Retryable) counts as a
// miss, so did is resolved again (or the running resolution joined).
// Anything else cached is returned as Lookup would.
func (r *Resolver) Retry(ctx context.Context, did string) (Identity, error) {
	ref, err := r.parse(did)
	if err != nil {
		return Identity{}, err
	}
	if id, ok, err := r.cached(&ref, did); ok && !(ref.isPLC && IsTransient(err)) {
		return id, err
	}
	r.misses.Inc()
	return r.resolve(ctx, &ref, did, true, ref.isPLC)
}

// Retryable reports whether err, returned by Lookup, Retry or Reresolve
// for did, is worth waiting out: a transient failure (IsTransient) of the
// PLC directory, the operator's service, which comes back. A did:web
// failure is not: its host is anyone's, and one that never answers must
// not hold the frames of its accounts for long.
func (r *Resolver) Retryable(did string, err error) bool {
	return strings.HasPrefix(did, plcPrefix) && IsTransient(err)
}

// parse parses did and applies the development switch: a did:web with an
// explicit port is malformed unless AllowInsecureHosts is set (the did:web spec
// allows ports only for localhost testing).
func (r *Resolver) parse(did string) (didRef, error) {
	ref, err := parseDID(did)
	if err == nil && ref.hasPort && !r.cfg.AllowInsecureHosts {
		return didRef{}, ErrBadDID
	}
	return ref, err
}

// Cached returns did's identity if the cache holds it, and never resolves:
// for callers that answer the public and must not turn a request into one
// to the directory (getRepo). ok is false when nothing is cached (or did is
// malformed); a cached failure returns ok true and its reason's sentinel.
// Like a Lookup hit it does not allocate.
func (r *Resolver) Cached(did string) (id Identity, ok bool, err error) {
	ref, perr := r.parse(did)
	if perr != nil {
		return Identity{}, false, nil
	}
	id, ok, err = r.cached(&ref, did)
	if !ok && r.disk != nil {
		id, ok = r.fromDisk(&ref, did, false)
	}
	return id, ok, err
}

// fromDisk answers a memory miss from did's disk row. A fresh row is
// cached with its remaining TTL. A stale one (past TTL, within DiskMaxAge)
// is served too, cached for staleServe seconds, and, if refresh is set,
// re-resolved in the background (within Prefetch's bound). ok is false
// without a usable row. The read is a Pebble point lookup (microseconds,
// or one disk read when the block is not cached), done without locks.
func (r *Resolver) fromDisk(ref *didRef, did string, refresh bool) (Identity, bool) {
	gen, busy := r.purgeGen.Load(), r.purging.Load() != 0
	var rec store.IdentityRecord
	if !r.disk.get(did, &rec) {
		return Identity{}, false
	}
	if testHookDiskRead != nil {
		testHookDiskRead(did)
	}
	unix := r.unixNow()
	age := unix - rec.ResolvedAt
	stale := age >= r.disk.ttl
	if age >= r.disk.maxAge || (stale && !refresh) {
		return Identity{}, false // the sweep deletes it
	}
	id, ok := identityOf(did, &rec)
	if !ok {
		return Identity{}, false
	}
	r.disk.hits.Inc()
	if stale {
		r.disk.stale.Inc()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if busy || r.purging.Load() != 0 || r.purgeGen.Load() != gen || r.mu.closed {
		// A Purge ran meanwhile: this row may be what it removed.
		return Identity{}, false
	}
	if r.mu.flights[did] != nil {
		return id, true // a resolution is running; it caches its own result
	}
	if cur, ok, err := r.cached(ref, did); ok && err == nil {
		return cur, true // a resolution finished since the miss
	}
	f := &flight{done: make(chan struct{}), id: id, finished: true, fromDisk: true, resolvedAt: rec.ResolvedAt}
	if stale {
		f.resolvedAt = unix - r.disk.ttl + staleServe
	}
	r.storeLocked(ref, did, f)
	if m := ref.method(); stale && r.mu.running[m] < maxPrefetchFlights*r.maxIn[m] {
		r.startFlightLocked(*ref, did, false)
		r.prefetches.Inc()
	}
	return f.id, true
}

// cached returns did's cached identity or cached failure, and whether there
// was one.
func (r *Resolver) cached(ref *didRef, did string) (Identity, bool, error) {
	e, handle, host, ok := r.cache.get(ref, did, r.now())
	if !ok {
		return Identity{}, false, nil
	}
	if e.reason != ReasonNone {
		return Identity{}, true, e.reason.Err()
	}
	return Identity{DID: did, Key: e.key, PDSHost: host, Handle: handle}, true, nil
}

// Purge forgets did (on an #identity event, a host mismatch or a failed
// signature, digest §8.1). A resolution already running for did is
// detached: its waiters still get its result, but it is not cached, and the
// next Lookup starts a fresh request.
func (r *Resolver) Purge(did string) {
	ref, err := r.parse(did)
	if err != nil {
		return
	}
	r.forget(&ref, did)
}

// Test hooks, nil outside tests: called by fromDisk between its disk read
// and taking r.mu, and by forget between the memory purge and the disk
// delete, to run a Purge or a Prefetch in exactly those windows.
var testHookDiskRead, testHookForget func(did string)

// forget purges did from memory, then deletes its disk row before it
// returns (see purging). The relay persists the event that caused a Purge
// after the Purge returns, so the delete precedes it in the WAL: a crash
// that keeps the event keeps the delete.
func (r *Resolver) forget(ref *didRef, did string) {
	r.purging.Add(1)
	r.mu.Lock()
	r.purgeLocked(ref, did)
	r.mu.Unlock()
	if testHookForget != nil {
		testHookForget(did)
	}
	if r.disk != nil {
		r.disk.del(did)
	}
	r.purgeGen.Add(1)
	r.purging.Add(-1)
}

// purgeLocked forgets did's cache entry and detaches its running flight.
// r.mu held.
func (r *Resolver) purgeLocked(ref *didRef, did string) {
	delete(r.mu.flights, did)
	r.cache.remove(ref, did)
}

// resolve waits for did's resolution, joining a running one or starting
// one; useDisk lets a new one answer from a fresh disk row, retry makes a
// cached transient failure a miss (Retry).
func (r *Resolver) resolve(ctx context.Context, ref *didRef, did string, useDisk, retry bool) (Identity, error) {
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return Identity{}, ErrClosed
	}
	f := r.mu.flights[did]
	if f != nil {
		r.coalesced.Inc()
	} else {
		// The caller's cache miss was read without r.mu: a flight may have
		// finished and stored its result since. finish does both under
		// r.mu, so no flight now means the cache is current.
		if id, ok, err := r.cached(ref, did); ok && !(retry && IsTransient(err)) {
			r.mu.Unlock()
			return id, err
		}
		f = r.startFlightLocked(*ref, did, useDisk)
	}
	r.mu.Unlock()
	return f.wait(ctx)
}

// wait returns the flight's result once it is done, or ctx's error first.
func (f *flight) wait(ctx context.Context) (Identity, error) {
	select {
	case <-f.done:
		if f.err != nil {
			return Identity{}, f.err
		}
		return f.id, nil
	case <-ctx.Done():
		return Identity{}, ctx.Err()
	}
}

// startFlightLocked registers a resolution of did (copied: the caller's
// string may alias a frame) and starts it; useDisk lets it answer from a
// fresh disk row. r.mu must be held, the resolver open and no flight for
// did registered.
func (r *Resolver) startFlightLocked(ref didRef, did string, useDisk bool) *flight {
	f := &flight{done: make(chan struct{}), useDisk: useDisk && r.disk != nil && r.purging.Load() == 0}
	did = clone(did)
	r.mu.flights[did] = f
	r.goLocked(ref, did, f)
	return f
}

// goLocked starts the goroutine resolving did into f. r.mu held.
func (r *Resolver) goLocked(ref didRef, did string, f *flight) {
	m := ref.method()
	r.mu.running[m]++
	if f.refresh {
		r.mu.refreshRunning[m]++
	}
	r.wg.Add(1)
	go r.run(ref, did, f)
}

// run performs one resolution and publishes it to the cache and waiters.
// A did:plc is retried after a transient failure, up to PLCRetries times:
// after a 429 as soon as the pace allows (the limiter holds every request
// for the Retry-After), otherwise after a backoff. A did:web gets one
// request: its host is anyone's, and one that fails or stalls is not worth
// another slot.
func (r *Resolver) run(ref didRef, did string, f *flight) {
	defer r.wg.Done()
	defer close(f.done)
	if f.useDisk && r.diskResult(did, f) {
		r.finish(&ref, did, f, true)
		return
	}
	var err error
	hedge := ref.isPLC && r.cfg.PLCHedgeAfter > 0 // one hedge per resolution
	for attempt := 0; ; attempt++ {
		f.id, err = r.request(&ref, did, f, attempt, &hedge)
		reason := reasonOf(err)
		if err == nil || errors.Is(err, ErrClosed) || !ref.isPLC || attempt == r.cfg.PLCRetries || !reason.Transient() ||
			reason == ReasonUnavailable {
			break
		}
		r.plcRetries.Inc()
		if reason != ReasonRateLimited && !sleep(r.ctx, backoff(r.cfg.PLCRetryBackoff, attempt)) {
			err = ErrClosed
			break
		}
	}
	f.resolvedAt = r.unixNow()
	f.err = err
	cacheable := !errors.Is(err, ErrClosed)
	if err != nil && cacheable {
		r.resolveErrs[reasonOf(err)].Inc()
	}
	r.finish(&ref, did, f, cacheable)
}

// request sends attempt number attempt (from 0) of did's resolution when
// its method allows (slot) and returns the identity or the failure. While
// *hedge is set (a did:plc whose resolution has not hedged yet) the
// attempt is a race (hedge.go), which clears it once it sends a hedge.
func (r *Resolver) request(ref *didRef, did string, f *flight, attempt int, hedge *bool) (Identity, error) {
	ctx, release, round, err := r.slot(ref, did, attempt)
	if err != nil {
		return Identity{}, err
	}
	if f.refresh && attempt == 0 {
		// From now on the document may predate a new #identity event:
		// later events no longer share this refresh.
		r.mu.Lock()
		if r.mu.unsent[did] == f {
			delete(r.mu.unsent, did)
		}
		r.mu.Unlock()
	}
	if *hedge {
		return r.race(ctx, release, ref, did, round, hedge)
	}
	return r.send(ctx, release, ref, did, round)
}

// send runs one request for did under ctx (from slot, its deadline set),
// gives its slot back (release) and returns the identity or the failure.
// A did:plc's answer adjusts the pace: a 429 slows every PLC request, any
// other answer lets the pace recover, a failure feeds the breaker. A
// request a race cancelled because the other one won (errLost) before it
// was answered adjusts nothing: its timeout is not the directory's.
func (r *Resolver) send(ctx context.Context, release func(), ref *didRef, did string, round uint64) (Identity, error) {
	m := ref.method()
	r.inFlight[m].Add(1)
	r.resolves.Inc()
	began := time.Now()
	id, after, err := r.fetch(ctx, ref, did)
	// Read before release cancels ctx; fetch reports any cancelled request
	// as a timeout.
	lost := errors.Is(context.Cause(ctx), errLost) && reasonOf(err) == ReasonTimeout
	if !lost {
		r.resolveTime.UpdateDuration(began)
	}
	r.inFlight[m].Add(-1)
	release()
	if ref.isPLC && !lost {
		switch reason := reasonOf(err); {
		case err == nil || !reason.Transient():
			r.plc.answered()
		case reason == ReasonRateLimited:
			r.plcLimited.Inc()
			r.plc.limited(round, after)
		case !errors.Is(err, ErrClosed):
			r.plc.failed()
		}
	}
	return id, err
}

// slot waits for the right to send ref's request and returns the context
// the request runs under (its deadline set), the function that gives the
// right back, and for a did:plc the pacing round it is sent in. A did:plc
// waits for a PLC token, then for its turn in the pace (plcLimiter), then
// has plcTimeout(attempt). A did:web waits for its domain's slot, then a
// did:web token, all within WebRequestTimeout, whose rest the request
// gets: a queue of did:web hosts that never answer therefore fails its
// DIDs quickly, and never touches the PLC tokens. Errors are ErrClosed or
// a ReasonTimeout *ResolveError.
func (r *Resolver) slot(ref *didRef, did string, attempt int) (context.Context, func(), uint64, error) {
	if ref.isPLC {
		select {
		case r.sems[methodPLC] <- struct{}{}:
		case <-r.ctx.Done():
			return nil, nil, 0, ErrClosed
		}
		// The token is taken first so that the request leaves exactly at
		// its turn, not in a burst when tokens free up.
		round, err := r.plc.wait(r.ctx)
		if err != nil {
			<-r.sems[methodPLC]
			if errors.Is(err, errUnavailable) {
				return nil, nil, 0, &ResolveError{DID: did, Reason: ReasonUnavailable, Cause: err}
			}
			return nil, nil, 0, ErrClosed
		}
		ctx, cancel := context.WithTimeout(r.ctx, r.plcTimeout(attempt))
		return ctx, func() { cancel(); <-r.sems[methodPLC] }, round, nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.WebRequestTimeout)
	queued := func(stage string) error {
		cancel()
		if r.ctx.Err() != nil {
			return ErrClosed
		}
		return &ResolveError{DID: did, Reason: ReasonTimeout, Cause: errors.New("no " + stage + " slot within the did:web timeout")}
	}
	domain := webDomain(ref.host)
	if !r.domains.acquire(ctx, domain) {
		return nil, nil, 0, queued("per-domain")
	}
	select {
	case r.sems[methodWeb] <- struct{}{}:
	case <-ctx.Done():
		r.domains.release(domain)
		return nil, nil, 0, queued("did:web")
	}
	return ctx, func() { cancel(); <-r.sems[methodWeb]; r.domains.release(domain) }, 0, nil
}

// finish stores the result (unless the flight was purged or the resolver is
// closing) and retires the flight, in one critical section so no Lookup can
// miss both the flight and the cache entry.
func (r *Resolver) finish(ref *didRef, did string, f *flight, cacheable bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f.finished = true
	if r.mu.unsent[did] == f {
		delete(r.mu.unsent, did) // it never sent its request (closing)
	}
	m := ref.method()
	r.mu.running[m]--
	if f.refresh {
		r.mu.refreshRunning[m]--
	}
	if r.mu.flights[did] != f {
		return // purged while running, or a refresh nobody has taken yet
	}
	delete(r.mu.flights, did)
	if cacheable {
		r.storeLocked(ref, did, f)
	}
}

// diskResult answers flight f from did's fresh disk row, if there is one
// and no Purge began since f started (a Purge after this check detaches f,
// so finish drops the result).
func (r *Resolver) diskResult(did string, f *flight) bool {
	gen := r.purgeGen.Load()
	var rec store.IdentityRecord
	if !r.disk.get(did, &rec) || r.unixNow()-rec.ResolvedAt >= r.disk.ttl {
		return false
	}
	id, ok := identityOf(did, &rec)
	if !ok || r.purging.Load() != 0 || r.purgeGen.Load() != gen {
		return false
	}
	r.disk.hits.Inc()
	f.id, f.fromDisk, f.resolvedAt = id, true, rec.ResolvedAt
	return true
}

// plcFailureTTL is how long a transient PLC failure (the directory
// rate-limiting, failing or unreachable, after the flight's retries) is
// cached: long enough that frames arriving meanwhile do not each start a
// resolution (Prefetch skips cached DIDs), short enough that it says
// nothing lasting about the DID. Retry ignores it.
const plcFailureTTL = 5 * time.Second

// plcTimeout bounds attempt number attempt (from 0) of a PLC resolution:
// a quarter of PLCRequestTimeout, doubled per earlier attempt, at most
// PLCRequestTimeout. While hedging is on the first attempt has at most
// twice PLCHedgeAfter: its hedge then gets PLCHedgeAfter to answer, as
// much as the request it hedges, and an attempt neither request answers
// (a dead HTTP/2 connection carries both) is abandoned that much sooner.
// Retries keep their growing timeouts, for a directory slow across the
// board.
func (r *Resolver) plcTimeout(attempt int) time.Duration {
	d := r.cfg.PLCRequestTimeout / 4
	for i := 0; i < attempt && d < r.cfg.PLCRequestTimeout; i++ {
		d *= 2
	}
	d = min(d, r.cfg.PLCRequestTimeout)
	if attempt == 0 && r.cfg.PLCHedgeAfter > 0 {
		d = min(d, 2*r.cfg.PLCHedgeAfter)
	}
	return d
}

// storeLocked caches the finished flight f's result for did and queues a
// fetched identity for the disk. It writes the interned PDS host into
// f.id, so f must not be visible to waiters yet (its done not closed):
// store a copy of a flight whose waiters may be reading it. r.mu held.
func (r *Resolver) storeLocked(ref *didRef, did string, f *flight) {
	now := r.now()
	if f.err != nil {
		reason, ttl := reasonOf(f.err), r.cfg.NegativeTTL
		if ref.isPLC && reason.Transient() {
			ttl = plcFailureTTL
		}
		r.cache.put(ref, did, entry{reason: reason, expires: now + seconds(ttl)}, "", now)
		return
	}
	hostRef := r.cache.internHost(f.id.PDSHost)
	// Hand out the interned host so callers hold one shared copy.
	if host, _, ok := r.cache.hosts.name(hostRef); ok {
		f.id.PDSHost = host
	}
	expires := r.clockAt(f.resolvedAt + int64(seconds(r.cfg.TTL)))
	if f.resolvedAt == 0 {
		expires = now + seconds(r.cfg.TTL)
	}
	r.cache.put(ref, did, entry{key: f.id.Key, host: hostRef, expires: expires}, f.id.Handle, now)
	if r.disk != nil && !f.fromDisk {
		r.disk.put(did, &f.id, f.resolvedAt)
	}
}

func seconds(d time.Duration) uint32 {
	s := d / time.Second
	if s < 1 {
		s = 1
	}
	return uint32(s)
}

// fetch runs the HTTP request for did under ctx (from slot, carrying the
// method's deadline). For a 429 it also returns the answer's Retry-After.
func (r *Resolver) fetch(ctx context.Context, ref *didRef, did string) (Identity, time.Duration, error) {
	var url string
	if ref.isPLC {
		url = r.cfg.PLCURL + "/" + did
	} else {
		scheme := "https://"
		if r.cfg.AllowInsecureHosts {
			scheme = "http://"
		}
		url = scheme + ref.host + "/.well-known/did.json"
	}
	fail := func(reason Reason, cause error) (Identity, time.Duration, error) {
		if r.ctx.Err() != nil {
			return Identity{}, 0, ErrClosed
		}
		var ne net.Error
		switch {
		case errors.Is(cause, netguard.ErrRefused):
			reason = ReasonRefusedAddr
		case ctx.Err() != nil || (errors.As(cause, &ne) && ne.Timeout()):
			reason = ReasonTimeout
		}
		return Identity{}, 0, &ResolveError{DID: did, Reason: reason, Cause: cause}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fail(ReasonTransport, err)
	}
	req.Header.Set("Accept", "application/did+ld+json, application/json")
	req.Header.Set("User-Agent", r.cfg.UserAgent)
	resp, err := r.clients[ref.method()].Do(req)
	if err != nil {
		return fail(ReasonTransport, err)
	}
	defer drainClose(resp.Body)
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return fail(ReasonNotFound, nil)
	case resp.StatusCode == http.StatusTooManyRequests:
		id, _, err := fail(ReasonRateLimited, nil)
		return id, retryAfter(resp.Header), err
	case resp.StatusCode >= 500:
		return fail(ReasonServerError, fmt.Errorf("status %d", resp.StatusCode))
	case resp.StatusCode != http.StatusOK:
		return fail(ReasonHTTPStatus, fmt.Errorf("status %d", resp.StatusCode))
	case resp.ContentLength > r.cfg.MaxDocBytes:
		return fail(ReasonTooLarge, nil)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, r.cfg.MaxDocBytes+1))
	if err != nil {
		return fail(ReasonTransport, err)
	}
	if int64(len(body)) > r.cfg.MaxDocBytes {
		return fail(ReasonTooLarge, nil)
	}
	id, reason := parseDocument(did, body, r.cfg.AllowInsecureHosts)
	if reason != ReasonNone {
		return fail(reason, nil)
	}
	return id, 0, nil
}

// drainClose reads a little of what is left so the connection can be
// reused, then closes. A body with more left than that is cut off, which
// costs the connection but never unbounded reading.
func drainClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 4<<10))
	_ = body.Close()
}

// Close stops new resolutions, cancels running ones, waits for their
// goroutines and closes idle connections, then commits the identities not
// yet written to the store (close the store after). Lookups after Close
// that miss the cache return ErrClosed. Later calls do nothing.
func (r *Resolver) Close() {
	r.mu.Lock()
	again := r.mu.closed
	r.mu.closed = true
	r.mu.Unlock()
	if again {
		return
	}
	r.cancel()
	r.wg.Wait()
	if r.disk != nil {
		r.disk.close()
	}
	for _, c := range r.clients {
		c.CloseIdleConnections()
	}
}
