package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/engine/upstream"
	"github.com/atrelay/relay/engine/verify"
	"github.com/atrelay/relay/pool"
	"github.com/atrelay/relay/store"
)

// Defaults of Config's fields (zero means these, never "unlimited").
const (
	DefaultAccountLimit           = 100        // spec §14.3 REF
	DefaultTrustedAccountLimit    = 10_000_000 // spec §14.3 REF
	DefaultNewHostsPerDay         = 50
	DefaultEventsPerSecond        = 50       // untrusted host base rate (§14.4)
	DefaultTrustedEventsPerSecond = 5_000    // §14.4
	DefaultWorkerQueueBytes       = 64 << 20 // intake per worker when IntakeBytes is unset
	DefaultWorkerQueueItems       = 4096
	DefaultResultsQueue           = 8192
	DefaultMaxBatchEvents         = 2048
	DefaultCursorFlushInterval    = time.Second
	DefaultProbeTimeout           = 5 * time.Second
	DefaultMaxConcurrentProbes    = 8
	DefaultMaxHosts               = 100_000
	DefaultOverlayBytes           = 64 << 20 // all workers together
	DefaultResultsQueueBytes      = 256 << 20
	DefaultResyncRetryBackoff     = 30 * time.Second
	DefaultResyncMaxBackoff       = 30 * time.Minute
	DefaultResyncMaxAttempts      = 8
	DefaultHostMetricsInterval    = 30 * time.Second
	DefaultHostMetricsTopN        = 50
	DefaultParkedAccounts         = 256
	DefaultIdentityRetryTimeout   = 10 * time.Minute
)

// ErrConfig is returned (wrapped) by New for an invalid Config or Deps.
var ErrConfig = errors.New("relay: invalid config")

// ErrStoreFailed is what Err returns after a store write failed: ingestion
// stopped and the relay must be restarted (the cause is wrapped).
var ErrStoreFailed = errors.New("relay: store write failed; ingestion stopped")

// PublishOrder is the order in which the relay publishes one host's
// events. Either way each account's events keep their upstream order,
// and a host's cursor only passes frames that are durable (or dropped).
type PublishOrder uint8

const (
	// OrderAccount keeps each account's events in upstream order, as the
	// spec (§15) and the reference relay (which runs up to 40 of a host's
	// events at once, one per account) promise. A host's #commit may then
	// be published ahead of an earlier frame of another account that is
	// parked for its DID document (a new account's first event waits for
	// the PLC directory, 80–400 ms), instead of waiting behind it. Only
	// commits pass (and frames that are dropped): their rev makes a second
	// delivery after a crash, from the host's cursor below the parked
	// frame, a stale duplicate the relay drops, so consumers still see
	// each event once.
	OrderAccount PublishOrder = iota
	// OrderHost publishes every host's events in the host's seq order: a
	// frame waiting for its identity holds back its host's later events.
	// The output is then a function of the input alone (golden tests,
	// differential replays), at the price of that wait.
	OrderHost
)

// Config holds the engine's knobs; cmd/relay fills it from flags and RELAY_*
// environment variables. Zero fields take the defaults above.
type Config struct {
	// AllowInsecureHosts accepts development hosts (syntax.NormalizeHost:
	// localhost, names under .localhost and loopback addresses, with a
	// port), the plaintext ones over ws:// and http:// (development only;
	// RELAY_ALLOW_INSECURE_HOSTS).
	AllowInsecureHosts bool
	// DefaultAccountLimit is how many accounts a new host may serve before
	// further new accounts are host-throttled (RELAY_DEFAULT_ACCOUNT_LIMIT).
	DefaultAccountLimit uint64
	// TrustedAccountLimit is the account limit of trusted hosts.
	TrustedAccountLimit uint64
	// TrustedDomains are host patterns ("*.host.bsky.network" or an exact
	// name) that get TrustedAccountLimit and TrustedEventsPerSecond
	// (RELAY_TRUSTED_DOMAINS).
	TrustedDomains []string
	// NewHostsPerDay bounds hosts added by public requestCrawl per UTC day
	// (RELAY_NEW_HOSTS_PER_DAY).
	NewHostsPerDay int
	// SeedHostsURL is a relay whose listHosts seeds an empty host table;
	// empty disables bootstrapping (RELAY_SEED_HOSTS_URL).
	SeedHostsURL string
	// DisablePublicCrawl starts with public requestCrawl switched off.
	DisablePublicCrawl bool
	// Workers is the number of validation workers (RELAY_WORKERS); default
	// GOMAXPROCS.
	Workers int
	// Validation is Strict (default) or Lenient (RELAY_VALIDATION).
	Validation verify.Mode
	// Order is the order the relay publishes each host's events in:
	// OrderAccount (default) or OrderHost (RELAY_PUBLISH_ORDER).
	Order PublishOrder
	// IntakeBytes bounds the frame buffers (their capacity) queued for all
	// workers together, split evenly between them (the memory budget's
	// intake share); a full
	// worker queue pauses the sending host
	// (relay_host_pauses_total{reason="pool_full"}). Default
	// DefaultWorkerQueueBytes per worker. ParkedBytes is part of it.
	IntakeBytes int64
	// ParkedBytes bounds the frame buffers all workers together keep parked
	// while their accounts' identities resolve (park.go), split evenly
	// between them and taken out of IntakeBytes. A worker over its share
	// waits for resolutions (relay_identity_park_full_total). Default
	// IntakeBytes/8; must be below IntakeBytes.
	ParkedBytes int64
	// ParkedAccounts bounds the accounts each worker keeps parked at once
	// (one goroutine each waits for its resolution). Default 256.
	ParkedAccounts int
	// IdentityRetryTimeout is how long a frame whose did:plc identity is
	// unavailable for a transient reason (the PLC directory rate-limiting,
	// failing or unreachable) is kept, parked or waited for, while the
	// resolution is retried with backoff, counted from the frame's
	// arrival; after it the frame is rejected as identity_unavailable
	// (relay_identity_park_expired_total). Definitive failures (no such
	// DID, an unusable document) and did:web failures are rejected at
	// once. Default 10m.
	IdentityRetryTimeout time.Duration
	// WorkerQueueItems bounds each worker's queued frames.
	WorkerQueueItems int
	// ResultsQueue bounds results waiting for the sequencer (items).
	ResultsQueue int
	// ResultsQueueBytes bounds the output frame bytes waiting for the
	// sequencer; a worker over it waits (its queue fills, its hosts pause).
	ResultsQueueBytes int64
	// HostHeldBytes bounds the bytes one host's results may take while
	// they wait for an earlier frame of the host (parked for its identity,
	// or slow): their frames and their slots in the host's held list, which
	// a dropped frame's result takes too. The host is paused beyond it
	// (relay_host_pauses_total{reason="held"}). Default MaxHeldBytes/8.
	HostHeldBytes int64
	// MaxHeldBytes bounds the results of all hosts together that wait for
	// an earlier frame of their host. Held results leave
	// ResultsQueueBytes as soon as the sequencer holds them, so a worker
	// never waits for room that only its own parked or queued frames can
	// make; beyond MaxHeldBytes every host with held results is paused
	// instead (reason "held"). Results of the paused hosts' frames already
	// queued can still arrive, so held results may pass MaxHeldBytes by
	// up to the intake (measured: by 0.8 times IntakeBytes at most in a
	// full-speed replay): output frames take at most ResultsQueueBytes +
	// MaxHeldBytes + IntakeBytes. Default ResultsQueueBytes.
	MaxHeldBytes int64
	// ResyncRetryBackoff is the wait before retrying a refused or failed
	// resync, doubled per failure up to ResyncMaxBackoff.
	ResyncRetryBackoff, ResyncMaxBackoff time.Duration
	// ResyncMaxAttempts bounds failed resyncs of one account in a row; the
	// account then stays desynchronized until the next restart, chain
	// break or operator resync.
	ResyncMaxAttempts int
	// HostMetricsInterval is how often the per-host series are re-chosen:
	// the HostMetricsTopN hosts by bytes received since the last pass.
	HostMetricsInterval time.Duration
	// HostMetricsTopN bounds the hosts with their own series.
	HostMetricsTopN int
	// MaxBatchEvents bounds one group commit. An explicit value above the
	// store's MaxBatchEvents is refused; the default is lowered to it.
	MaxBatchEvents int
	// EventsPerSecond is an untrusted host's base event rate; its account
	// limit / 1000 is added (§14.4). Over-limit hosts are paused, not dropped
	// (relay_host_pauses_total{reason="rate_limit"}).
	EventsPerSecond float64
	// TrustedEventsPerSecond is a trusted host's event rate.
	TrustedEventsPerSecond float64
	// CursorFlushInterval is how often host cursors that moved without an
	// event to carry them (dropped frames) are persisted.
	CursorFlushInterval time.Duration
	// ProbeTimeout bounds the describeServer probe of requestCrawl.
	ProbeTimeout time.Duration
	// MaxConcurrentProbes bounds requestCrawl describeServer probes in
	// flight (each an outbound request to a caller-chosen host); beyond it
	// requestCrawl answers ErrProbesBusy (429). Default 8.
	MaxConcurrentProbes int
	// MaxHosts bounds the subscribed hosts: each one holds memory for as
	// long as it is subscribed (its connection, crypto/tls's record
	// buffers, the relay's own state; see HostStateBytes and
	// upstream's per-host figures), so a relay with a memory budget derives
	// this from its hosts share. A requestCrawl (public or admin), a seed
	// list or a resubscription at start past it is refused with
	// ErrHostCapacity (relay_host_capacity_refusals_total). Default 100,000.
	MaxHosts int
	// OverlayBytes bounds the workers' caches of account states (the
	// overlay in front of the store), all workers together, split evenly
	// between them. It is an estimate of their heap (about 256 bytes per
	// did:plc account with a commit: overlay.go, entryBytes), exported as
	// relay_overlay_bytes. Entries whose state is not durable yet are
	// never evicted, so the overlay may pass it while the sequencer is
	// behind. Default 64 MiB (about 260,000 accounts).
	OverlayBytes int64
	// Upstream configures the epoll loop; Sink, Cursor, OnConnect and
	// AllowInsecureHosts are set by New.
	Upstream upstream.Config
}

func (c Config) withDefaults() Config {
	orDefault(&c.DefaultAccountLimit, DefaultAccountLimit)
	orDefault(&c.TrustedAccountLimit, DefaultTrustedAccountLimit)
	orDefault(&c.NewHostsPerDay, DefaultNewHostsPerDay)
	orDefault(&c.Workers, runtime.GOMAXPROCS(0))
	orDefault(&c.WorkerQueueItems, DefaultWorkerQueueItems)
	orDefault(&c.ResultsQueue, DefaultResultsQueue)
	orDefault(&c.MaxBatchEvents, DefaultMaxBatchEvents)
	orDefault(&c.MaxHosts, DefaultMaxHosts)
	orDefault(&c.OverlayBytes, DefaultOverlayBytes)
	orDefault(&c.IntakeBytes, DefaultWorkerQueueBytes*int64(c.Workers))
	orDefault(&c.ParkedBytes, c.IntakeBytes/8)
	orDefault(&c.ParkedAccounts, DefaultParkedAccounts)
	orDefault(&c.IdentityRetryTimeout, DefaultIdentityRetryTimeout)
	orDefault(&c.EventsPerSecond, DefaultEventsPerSecond)
	orDefault(&c.TrustedEventsPerSecond, DefaultTrustedEventsPerSecond)
	orDefault(&c.CursorFlushInterval, DefaultCursorFlushInterval)
	orDefault(&c.ProbeTimeout, DefaultProbeTimeout)
	orDefault(&c.MaxConcurrentProbes, DefaultMaxConcurrentProbes)
	orDefault(&c.ResultsQueueBytes, DefaultResultsQueueBytes)
	orDefault(&c.MaxHeldBytes, c.ResultsQueueBytes)
	orDefault(&c.HostHeldBytes, c.MaxHeldBytes/8)
	orDefault(&c.ResyncRetryBackoff, DefaultResyncRetryBackoff)
	orDefault(&c.ResyncMaxBackoff, DefaultResyncMaxBackoff)
	orDefault(&c.ResyncMaxAttempts, DefaultResyncMaxAttempts)
	orDefault(&c.HostMetricsInterval, DefaultHostMetricsInterval)
	orDefault(&c.HostMetricsTopN, DefaultHostMetricsTopN)
	return c
}

// orDefault stores d in *v when *v is zero or negative: withDefaults treats
// a negative size or interval like an unset one.
func orDefault[T uint64 | int | int64 | float64 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Resyncer repairs a desynchronized account: fetch the repo from its PDS
// and verify it, then report through Relay.OnResyncResult. engine/resync
// implements it (wire its Config.OnResult to OnResyncResult); without one
// the relay keeps such accounts desynchronized and counts them. Enqueue
// returns false when it refuses the DID (queue full, closing): the relay
// counts the refusal and retries later.
type Resyncer interface {
	Enqueue(did, host string) bool
}

// Deps are the already-open services the relay wires together.
type Deps struct {
	Store    *store.Store       // required
	Identity *identity.Resolver // required
	Hub      *firehose.Hub      // required; built on store.FirehoseLog(Store)
	Resyncer Resyncer           // optional
	Logger   *slog.Logger       // default: discard
	Metrics  *metrics.Set       // default: a private set
	// HTTPClient probes describeServer and bootstraps from the seed relay.
	// Default: for the probe, a client with ProbeTimeout that dials public
	// addresses only (and loopback with AllowInsecureHosts); for the
	// operator-chosen seed relay, a plain client with ProbeTimeout.
	HTTPClient *http.Client
	// Now is the clock (rate limits, validation); default time.Now.
	Now func() time.Time
	// OnPublish, when set, is called by the sequencer goroutine after each
	// durable batch was handed to the hub: a wake-up for other readers of
	// the log (the Jetstream stream). It must not block.
	OnPublish func()
}

// Relay is the running engine: the composition of its stages (doc.go,
// Ownership), which New builds and wires, and the public API, whose
// methods delegate to them. Its exported methods are safe for concurrent
// use.
type Relay struct {
	// Static after New.
	cfg     Config
	st      *store.Store
	ids     *identity.Resolver
	hub     *firehose.Hub
	onPub   func() // Deps.OnPublish; nil: none
	log     *slog.Logger
	m       *metricsSet
	now     func() time.Time
	loop    *upstream.Loop
	workers *pool.Workers[task, scratch]
	bufs    *pool.Buffers
	frames  *pool.Frames

	// The stages.
	hosts   *hostTable      // host registry, requestCrawl, bans, quarantine, host series
	ingest  *ingest         // the Sink, rate limits, the resumer
	work    *accountWorkers // validation, parking and account actions on the keyed workers
	actions *accountActions // operator and resyncer actions, queued on the workers
	resyncs *resyncs        // desynchronized accounts and their repairs
	seq     *sequencer

	ctx      context.Context // canceled by Close once the workers and the sequencer stopped
	cancel   context.CancelFunc
	closing  sync.Once
	wg       sync.WaitGroup // resumer, host metrics, start-up recovery
	done     chan struct{}  // closed by markDone: after Close, or once a store failure stopped the relay
	doneOnce sync.Once
	bgCtx    context.Context // canceled first by Close: background loops exit
	bgCancel context.CancelFunc

	failed  atomic.Bool
	failErr atomic.Pointer[error]
}

// New builds the relay and starts its workers and sequencer. Call Start to
// subscribe to hosts and Close to stop.
func New(cfg Config, d Deps) (*Relay, error) {
	batchSet := cfg.MaxBatchEvents > 0
	cfg = cfg.withDefaults()
	if d.Store == nil || d.Identity == nil || d.Hub == nil {
		return nil, fmt.Errorf("%w: Store, Identity and Hub are required", ErrConfig)
	}
	if cfg.ParkedBytes >= cfg.IntakeBytes {
		return nil, fmt.Errorf("%w: ParkedBytes %d not below IntakeBytes %d", ErrConfig, cfg.ParkedBytes, cfg.IntakeBytes)
	}
	// A batch above the opened store's limit would fail its Append and stop
	// ingestion for good: refuse an explicit value, lower the default.
	if limit := d.Store.MaxBatchEvents(); cfg.MaxBatchEvents > limit {
		if batchSet {
			return nil, fmt.Errorf("%w: MaxBatchEvents %d above the store's %d", ErrConfig, cfg.MaxBatchEvents, limit)
		}
		cfg.MaxBatchEvents = limit
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = metrics.NewSet()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	probeHTTP := d.HTTPClient
	if d.HTTPClient == nil {
		d.HTTPClient = &http.Client{Timeout: cfg.ProbeTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		probeHTTP = newProbeClient(cfg.ProbeTimeout, cfg.AllowInsecureHosts)
	}
	r := &Relay{
		cfg: cfg, st: d.Store, ids: d.Identity, hub: d.Hub, onPub: d.OnPublish, log: d.Logger, now: d.Now,
		done: make(chan struct{}),
	}
	var rejects, breaks []string
	for _, v := range verify.AllReasons() {
		rejects = append(rejects, v.String())
	}
	for _, b := range []verify.ChainBreak{verify.BreakSince, verify.BreakPrevData} {
		breaks = append(breaks, b.String())
	}
	r.m = newMetrics(d.Metrics, rejects, breaks)
	r.hosts = newHostTable(&r.cfg, d, probeHTTP, r.m)
	r.resyncs = newResyncs(&r.cfg, d, r.m)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.bgCtx, r.bgCancel = context.WithCancel(context.Background())
	r.bufs = pool.NewBuffers(d.Metrics, "relay")
	r.frames = pool.NewFrames(r.bufs)
	r.seq = newSequencer(r)
	queueBytes := (cfg.IntakeBytes - cfg.ParkedBytes) / int64(cfg.Workers)
	r.work = &accountWorkers{cfg: &r.cfg, st: r.st, ids: r.ids, log: r.log, m: r.m, now: r.now, bufs: r.bufs,
		hosts: r.hosts, resyncs: r.resyncs, fail: r.fail, ctx: r.ctx, bgCtx: r.bgCtx,
		results: r.seq.results, budget: &r.seq.budget, durable: r.seq.durable, parkedHeads: &r.seq.parked,
		overlayBytes: make([]atomic.Int64, cfg.Workers)}
	r.workers = pool.NewWorkers(pool.WorkersConfig{Workers: cfg.Workers, QueueItems: cfg.WorkerQueueItems, QueueBytes: max(queueBytes, 1)},
		r.work.newScratch, r.work.run)
	r.work.pool = r.workers
	r.work.ready = make([]readyUnparks, cfg.Workers)
	r.actions = &accountActions{pool: r.workers, st: r.st, hosts: r.hosts, resyncs: r.resyncs, now: r.now, log: r.log}
	r.ingest = &ingest{m: r.m, log: r.log, now: r.now, ids: r.ids, hosts: r.hosts, failed: &r.failed, ctx: r.ctx,
		pool: r.workers, resume: make(chan *hostState, 1024)}

	ucfg := cfg.Upstream
	ucfg.Sink = r.ingest.sink
	ucfg.Cursor = r.ingest.cursorFor
	ucfg.OnConnect = r.ingest.onConnect
	ucfg.AllowInsecureHosts = cfg.AllowInsecureHosts
	if ucfg.Metrics == nil {
		ucfg.Metrics = d.Metrics
	}
	loop, err := upstream.New(ucfg)
	if err != nil {
		_ = r.workers.Close()
		return nil, fmt.Errorf("%w: upstream: %v", ErrConfig, err)
	}
	r.loop, r.hosts.loop, r.ingest.loop, r.seq.loop = loop, loop, loop, loop
	r.registerGauges(d.Metrics)
	go r.seq.run()
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		r.ingest.resumer()
	}()
	go func() {
		defer r.wg.Done()
		r.hosts.metricsLoop(r.bgCtx)
	}()
	return r, nil
}

func (r *Relay) registerGauges(set *metrics.Set) {
	gauge(set, "relay_worker_queue_bytes", func() float64 {
		var sum int64
		for i := 0; i < r.workers.NumWorkers(); i++ {
			_, b := r.workers.Queued(i)
			sum += b
		}
		return float64(sum)
	})
	gauge(set, `relay_pipeline_results_queued`, func() float64 { return float64(len(r.seq.results)) })
	gauge(set, `relay_identity_parked_frames`, func() float64 { return float64(r.work.parkedFrames.Load()) })
	gauge(set, `relay_pipeline_results_bytes`, func() float64 { return float64(r.seq.budget.inUse()) })
	gauge(set, `relay_pipeline_held_bytes`, func() float64 { return float64(r.seq.heldNow.Load()) })
	gauge(set, `relay_overlay_bytes`, func() float64 {
		var sum int64
		for i := range r.work.overlayBytes {
			sum += r.work.overlayBytes[i].Load()
		}
		return float64(sum)
	})
	gauge(set, `relay_accounts_desynchronized`, func() float64 { return float64(r.resyncs.desynchronized()) })
	for _, st := range []string{"connected", "paused", "disconnected"} {
		gauge(set, `relay_upstream_hosts_by_status{status="`+st+`"}`, func() float64 {
			c, p, d := r.hosts.upstreamCounts()
			switch st {
			case "connected":
				return float64(c)
			case "paused":
				return float64(p)
			}
			return float64(d)
		})
	}
	gauge(set, "relay_healthy", func() float64 {
		if r.failed.Load() {
			return 0
		}
		return 1
	})
	gauge(set, "relay_hosts_subscribed", func() float64 { return float64(r.hosts.count()) })
	gauge(set, "relay_hosts_max", func() float64 { return float64(r.cfg.MaxHosts) })
}

// Start resubscribes every active host from its persisted cursor and, if
// the host table is empty and a seed relay is configured, bootstraps it.
func (r *Relay) Start(ctx context.Context) error {
	if err := r.hosts.resubscribe(); err != nil {
		return err
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.actions.recoverAccounts(r.bgCtx)
	}()
	if err := r.hosts.bootstrap(ctx); err != nil {
		r.log.Warn("host bootstrap failed", "err", err)
	}
	return nil
}

// Healthy reports whether ingestion is running (no store failure).
func (r *Relay) Healthy() bool { return !r.failed.Load() }

// Err returns the error that stopped ingestion, or nil.
func (r *Relay) Err() error {
	if p := r.failErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Done is closed when the relay has stopped: after Close, or as soon as a
// store failure stopped ingestion and the hub's consumers were disconnected
// (Err is then set). A supervisor waits on it to exit non-zero, so that
// systemd restarts the relay on a store that reopens cleanly.
func (r *Relay) Done() <-chan struct{} { return r.done }

func (r *Relay) markDone() { r.doneOnce.Do(func() { close(r.done) }) }

// fail stops ingestion after a store error: every host is paused by the Sink
// from now on, the health endpoint turns unhealthy, the error is logged,
// consumers are disconnected and Done closes. The store refuses every write
// after a failure (its memory may disagree with the disk), so nothing short
// of a restart recovers; consumers reconnect to the restarted relay with
// their cursor instead of waiting on a log that no longer grows.
func (r *Relay) fail(err error) {
	if r.failed.Swap(true) {
		return
	}
	err = fmt.Errorf("%w: %w", ErrStoreFailed, err)
	r.failErr.Store(&err)
	r.m.storeFailures.Inc()
	r.log.Error("STORE WRITE FAILED: ingestion stopped, restart the relay", "err", err)
	// fail runs on the sequencer or a worker, and Hub.Close waits for the
	// consumers' goroutines: close from a goroutine of its own. Close waits
	// for it (through done).
	go func() {
		r.hub.Close()
		r.markDone()
	}()
}

// Close stops reading upstream, drains the workers and the sequencer (every
// frame already read is validated, persisted and published) and persists
// host cursors. It does not close the store or the hub.
func (r *Relay) Close() error {
	r.closing.Do(func() {
		r.resyncs.stop()
		_ = r.loop.Close()
		close(r.ingest.resume)
		r.bgCancel()
		r.wg.Wait()
		// Parked frames were read: process them (waiting for their
		// identities) before the workers stop.
		for i := 0; i < r.workers.NumWorkers(); i++ {
			_ = r.workers.SubmitTo(context.Background(), i, task{ctl: &control{kind: ctlFlushParked}}, 1)
		}
		_ = r.workers.Close()
		close(r.seq.results)
		<-r.seq.done
		r.cancel()
		r.work.parkWG.Wait() // their Lookups end with r.ctx
		// Only workers and the sequencer call fail, and both have stopped:
		// failed is final here.
		if r.failed.Load() {
			<-r.done // fail's goroutine closes the hub first
		} else {
			r.markDone()
		}
	})
	return r.Err()
}
