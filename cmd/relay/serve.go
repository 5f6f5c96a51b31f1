package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/atrelay/relay/engine/admin"
	"github.com/atrelay/relay/engine/clientip"
	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/engine/jetstream"
	"github.com/atrelay/relay/engine/memory"
	"github.com/atrelay/relay/engine/relay"
	"github.com/atrelay/relay/engine/resync"
	"github.com/atrelay/relay/engine/upstream"
	"github.com/atrelay/relay/engine/xrpc"
	"github.com/atrelay/relay/store"
)

// runServe is `relay serve`, the composition root: parse the settings
// (settings.go), build the app, run it until a signal, a fatal relay error
// or a listener failure.
func runServe(args []string) error {
	dot, err := readDotenv(".env")
	if err != nil {
		return err
	}
	s, printEnv, err := parseSettings(args, withDotenv(os.LookupEnv, dot), os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if printEnv {
		return writeEnvFile(os.Stdout, settingsTable(&Settings{}))
	}
	log, err := newLogger(s.LogLevel, s.LogFormat, os.Stderr)
	if err != nil {
		return err
	}
	if len(dot) > 0 {
		log.Info("read settings from .env", "variables", len(dot))
	}
	for _, w := range s.Warnings {
		log.Warn(w)
	}
	a, err := buildApp(s, log)
	if err != nil {
		return err
	}
	return untilSignal(a.run)
}

// untilSignal calls run with a context that SIGINT or SIGTERM cancels.
// Callers build first: signals are caught only once there is something to
// shut down, so during the build (a long WAL replay, say) they still end
// the process at once.
func untilSignal(run func(context.Context) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx)
}

func newLogger(level slog.Level, format string, w io.Writer) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want json or text", format)
}

// app holds the built components of a running relay. buildApp makes it,
// run serves until told to stop, close releases everything; one goroutine
// drives all three.
type app struct {
	log     *slog.Logger
	metrics *metrics.Set
	trim    *memory.Trimmer // nil when the trimmer is off
	store   *store.Store
	ids     *identity.Resolver
	hub     *firehose.Hub
	resync  *resync.Resyncer
	relay   *relay.Relay
	js      *jetstream.Server
	// ledger lists the memory bound each component was configured with
	// (memory.Ledger); every place that hands a share over adds its line.
	ledger *memory.Ledger
	// httpRequestBytes is the part of the HTTP share the public listener's
	// requests took (httpRequests); its connections get the rest.
	httpRequestBytes int64
	// servers are the public API (first) and the admin listener, bound by
	// buildApp and served by run.
	servers []server
}

// server is one HTTP server and its bound listener.
type server struct {
	srv *http.Server
	ln  net.Listener
}

// buildApp sizes the process's memory, then opens and wires every
// component and binds both listeners; nothing is served or dialed yet. On
// error it closes what it had built.
func buildApp(s *Settings, log *slog.Logger) (*app, error) {
	a := &app{log: log, metrics: metrics.NewSet()}
	metrics.RegisterSet(a.metrics)
	if err := a.build(s); err != nil {
		_ = a.close()
		return nil, err
	}
	return a, nil
}

func (a *app) build(s *Settings) error {
	if err := applyTestCA(s); err != nil {
		return err
	}
	shares, err := a.tuneMemory(s, false)
	if err != nil {
		return err
	}
	if err := a.openServices(s, shares); err != nil {
		return err
	}
	if err := a.buildRelay(s, shares); err != nil {
		return err
	}
	a.checkLedger()
	xrpcAPI, err := xrpc.New(a.xrpcConfig(s, shares))
	if err != nil {
		return err
	}
	adm, err := a.adminServer(s.AdminToken, adminEngine{r: a.relay, hub: a.hub})
	if err != nil {
		return err
	}
	var publicAdmin http.Handler
	if s.AdminOnAPI && adm != nil {
		publicAdmin = adm
	}
	return a.listen(s, shares, xrpcAPI.Public(xrpc.PublicConfig{Software: software, Admin: publicAdmin}), adm)
}

// listen binds the public API listener (Jetstream at GET /subscribe, api
// for the rest) and the admin listener (adminHandler of adm).
func (a *app) listen(s *Settings, shares memory.Shares, api http.Handler, adm *admin.Server) error {
	mux := http.NewServeMux()
	mux.Handle("GET /subscribe", a.js)
	mux.Handle("/", api)
	public := newHTTPServer(mux)
	// Every open connection costs a goroutine and its buffers before it
	// sends anything: the public listener's are capped by what the
	// requests they make left of the HTTP share (httpRequests). The admin
	// listener is not public (section 1 of the RUNBOOK).
	conns := clientip.NewConnLimiter(a.metrics, "relay_http_connections_open", "relay_http_connections_refused_total",
		a.withinShare("http connections", orDefault(s.MaxHTTPConns, defaultMaxHTTPConns), shares.HTTP-a.httpRequestBytes, httpConnBytes, 0),
		orDefault(s.MaxHTTPConnsPerIP, defaultMaxHTTPConnsPerIP), clientip.Policy{TrustedProxies: s.TrustedProxies})
	conns.ExemptLoopback = true
	public.ConnState = conns.Hook
	for _, l := range []struct {
		addr string
		srv  *http.Server
	}{{s.APIListen, public}, {s.AdminListen, newHTTPServer(a.adminHandler(adm))}} {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return err
		}
		a.log.Info("listening", "addr", ln.Addr().String())
		a.servers = append(a.servers, server{srv: l.srv, ln: ln})
	}
	return nil
}

// Defaults of the public listener's connection caps (Settings.MaxHTTPConns,
// MaxHTTPConnsPerIP).
const (
	defaultMaxHTTPConns      = 10_000
	defaultMaxHTTPConnsPerIP = 32
)

// httpConnBytes is what one connection to the public listener can hold
// before a WebSocket endpoint hijacks it: the server's goroutine and
// buffers (about 14 KiB silent, 16 KiB idle after a request) and, at
// worst, a request's headers being read up to maxHeaderBytes (measured
// 33 KiB in all, TestHTTPConnBytes), with a third of margin.
const httpConnBytes = 48 << 10

// tuneMemory applies the memory budget to the Go runtime (process-wide:
// GOMEMLIMIT, GOGC, the C allocator), starts the heap trimmer unless it is
// off, and returns the budget's shares with the explicit sizes in place,
// the splitter's (memory.Shares.ForSplitter) when splitter is set.
func (a *app) tuneMemory(s *Settings, splitter bool) (memory.Shares, error) {
	memCfg := s.Memory
	memCfg.OffHeapOf = func(b int64) int64 { return s.Sizes.apply(b).OffHeap() }
	if !memory.TuneCAllocator() {
		a.log.Warn("memory: the C allocator refused a setting (see memory.TuneCAllocator)")
	}
	applied, err := memory.Apply(memCfg, a.log)
	if err != nil {
		return memory.Shares{}, err
	}
	shares := s.Sizes.apply(applied.Budget)
	if splitter {
		shares = shares.ForSplitter()
	}
	memCfg.TrimThreshold = shares.TrimThreshold
	a.ledger = memory.NewLedger(applied.Budget)
	a.log.Info("memory shares", "budget", applied.Budget, "pebble_cache", shares.BlockCache, "pebble_memtable", shares.MemTable,
		"firehose_buffer", shares.Ring, "identity_cache", shares.IdentityCache, "upstream", shares.Upstream,
		"intake", shares.Intake, "results", shares.Results, "resync", shares.Resync, "consumers", shares.Consumers,
		"jetstream", shares.Jetstream, "http", shares.HTTP, "hosts", shares.Hosts, "overlay", shares.Overlay,
		"trim_threshold", shares.TrimThreshold)
	memory.RegisterRuntimeMetrics(a.metrics, applied)
	trim, err := memory.NewTrimmer(memCfg, a.metrics, a.log)
	if err != nil {
		return memory.Shares{}, err
	}
	if !s.Trim {
		a.log.Info("heap trimmer off")
		return shares, nil
	}
	if err := trim.Start(); err != nil {
		return memory.Shares{}, err
	}
	a.trim = trim
	return shares, nil
}

// openServices opens the store, the identity resolver and the firehose hub.
func (a *app) openServices(s *Settings, shares memory.Shares) error {
	if err := a.openStore(s, shares); err != nil {
		return err
	}
	st := a.store
	idCfg := s.Identity
	idCfg.AllowInsecureHosts, idCfg.MaxCacheBytes, idCfg.Metrics = s.AllowInsecureHosts, shares.IdentityCache, a.metrics
	a.ledger.Add("identity cache", idCfg.MaxCacheBytes, true)
	if s.IdentityDisk {
		// Resolved identities survive restarts: a restart is not millions of
		// PLC requests. The resolver is closed before the store (close).
		idCfg.Store = st
	}
	a.ids = identity.New(idCfg)

	var err error
	a.hub, err = firehose.NewHub(store.FirehoseLog{St: st}, a.firehoseConfig(s, shares))
	return err
}

// openStore creates the data directory and opens the store in it with the
// memory shares' cache sizes. RELAY_INITIAL_SEQ(_NUMBER) also moves an
// existing database forward, as the reference relay's does; never
// backwards.
func (a *app) openStore(s *Settings, shares memory.Shares) error {
	if err := os.MkdirAll(s.DataDir, 0o750); err != nil {
		return err
	}
	opts := s.Store
	opts.BlockCacheBytes, opts.MemTableBytes = shares.BlockCache, uint64(shares.MemTable)
	pebbleOnHeap := memory.PebbleOffHeap(1, 0, 0) == 0 // built without cgo
	a.ledger.Add("pebble block cache", opts.BlockCacheBytes, pebbleOnHeap)
	a.ledger.Add("pebble memtables", int64(opts.MemTableBytes)*memory.MemTablesInMemory, pebbleOnHeap)
	st, err := store.Open(s.DataDir, opts)
	if err != nil {
		return err
	}
	a.store = st
	st.RegisterMetrics(a.metrics)
	if s.Store.InitialSeq > 1 {
		moved, err := st.AdvanceSeq(s.Store.InitialSeq)
		if err != nil {
			return err
		}
		if moved {
			a.log.Warn("next seq moved forward by RELAY_INITIAL_SEQ", "next_seq", s.Store.InitialSeq)
		}
	}
	return nil
}

// firehoseConfig is the configured firehose sized to its memory shares:
// the ring and its slots, and the consumers the consumers share holds; it
// adds both to the ledger, so it is called once per app.
func (a *app) firehoseConfig(s *Settings, shares memory.Shares) firehose.Config {
	c := s.Firehose
	c.RingBytes, c.Metrics, c.Logger, c.Software = int(shares.Ring), a.metrics, a.log, software
	c.TrustedProxies = s.TrustedProxies
	if c.RingFrames == 0 {
		// The slot array is allocated up front: size it to the ring (frames
		// average ~2 KB; an eighth of that per slot leaves room for bursts
		// of small ones) instead of 128 Ki slots (3 MiB) at every budget.
		c.RingFrames = int(min(max(shares.Ring/256, 8192), firehose.DefaultRingFrames))
	}
	c.MaxConsumers = a.withinShare("firehose consumers", orDefault(c.MaxConsumers, firehose.DefaultMaxConsumers),
		shares.Consumers, c.ConsumerBytes(), 0)
	a.ledger.Add("firehose ring", int64(c.RingBytes), true)
	return c
}

// jetstreamConfig is the configured Jetstream server sized to its memory
// share for about target subscribers (jetstreamWithin, then the
// subscribers that fit); it adds them to the ledger, so it is called once
// per app.
func (a *app) jetstreamConfig(s *Settings, shares memory.Shares, target int) jetstream.Config {
	c := jetstreamWithin(s.Jetstream, shares.Jetstream, target)
	c.MaxSubscribers = a.withinShare("jetstream subscribers", orDefault(c.MaxSubscribers, jetstream.DefaultMaxSubscribers),
		shares.Jetstream, c.SubscriberBytes(), c.SharedBytes())
	c.Metrics, c.Logger, c.Software = a.metrics, a.log, software
	c.TrustedProxies = s.TrustedProxies
	return c
}

// buildRelay makes the resyncer and the relay, which report to each other.
func (a *app) buildRelay(s *Settings, shares memory.Shares) error {
	// The resyncer reports into the relay, which does not exist yet: r is
	// assigned before Start, and nothing is enqueued before Start, so every
	// OnResult sees it (the Enqueue channel orders the two).
	var r *relay.Relay
	rsCfg := s.Resync
	rsCfg.Identities, rsCfg.AllowInsecureHosts, rsCfg.Metrics, rsCfg.Logger = a.ids, s.AllowInsecureHosts, a.metrics, a.log
	rsCfg.MemoryBytes = shares.Resync
	a.ledger.Add("resync", rsCfg.MemoryBytes, true)
	rsCfg.OnResult = func(did string, res resync.Result) { r.OnResyncResult(did, res) }
	rs, err := resync.New(rsCfg)
	if err != nil {
		return err
	}
	a.resync = rs
	rCfg := s.Relay
	rCfg.AllowInsecureHosts, rCfg.IntakeBytes = s.AllowInsecureHosts, shares.Intake
	// The results share holds the group commit's Pebble batch (a copy of
	// the results it writes); of the rest, half for results in transit to
	// the sequencer, half for those it holds for host order.
	groupCommit := relay.GroupCommitBytes(a.store.MaxBatchBytes())
	results := shares.Results - groupCommit
	rCfg.ResultsQueueBytes, rCfg.MaxHeldBytes = results/2, results/2
	// Four fifths of the upstream share for messages in flight, a fifth
	// for bytes read past a paused host's frame.
	rCfg.Upstream.MaxBufferedBytes, rCfg.Upstream.MaxPendingBytes = shares.Upstream*4/5, shares.Upstream/5
	// Every subscribed host holds its connection's buffers for as long as
	// it is subscribed: the hosts share bounds how many there may be, each
	// counted at a TLS host's worst case.
	rCfg.MaxHosts = a.withinShare("subscribed hosts", orDefault(rCfg.MaxHosts, relay.DefaultMaxHosts),
		shares.Hosts, relay.HostStateBytes+upstream.HostBytesTLS, 0)
	rCfg.OverlayBytes = shares.Overlay
	a.ledger.Add("account overlay", rCfg.OverlayBytes, true)
	a.ledger.Add("upstream buffers", rCfg.Upstream.MaxBufferedBytes+rCfg.Upstream.MaxPendingBytes, true)
	a.ledger.Add("intake", rCfg.IntakeBytes, true)
	a.ledger.Add("results", rCfg.ResultsQueueBytes+rCfg.MaxHeldBytes, true)
	a.ledger.Add("group commit batch", groupCommit, true)
	// Paused hosts' queued frames still become held results.
	a.ledger.Add("held results past their bound", rCfg.IntakeBytes, true)
	// The Jetstream server exists before the relay publishes anything: it
	// is woken after every durable batch instead of polling the log.
	if a.js, err = jetstream.New(jetstream.StoreSource{Store: a.store}, a.jetstreamConfig(s, shares, relayJetstreamTarget)); err != nil {
		return err
	}
	r, err = relay.New(rCfg, relay.Deps{Store: a.store, Identity: a.ids, Hub: a.hub, Resyncer: rs, Logger: a.log,
		Metrics: a.metrics, OnPublish: a.js.Notify, HTTPClient: s.testHTTP})
	if err != nil {
		return err
	}
	a.relay = r
	return nil
}

// httpRequests returns how many requests of per bytes each the public
// listener may answer at once: a quarter of the HTTP share, at least one,
// at most configured. Their bytes are kept from the connections' part of
// the share (listen), so it is called once per app, before listen.
func (a *app) httpRequests(name string, configured int, shares memory.Shares, per int64) int {
	n := a.withinShare(name, configured, max(shares.HTTP/4, per), per, 0)
	a.httpRequestBytes += int64(n) * per
	return n
}

// checkLedger logs the ledger, or warns when the configured bounds add up
// to more than the budget: explicit sizes (RELAY_FIREHOSE_BUFFER,
// RELAY_PEBBLE_CACHE, ...) may be the operator's choice, so it does not
// refuse.
func (a *app) checkLedger() {
	if err := a.ledger.Check(); err != nil {
		a.log.Warn("memory: the configured bounds exceed the budget; RSS may pass it", "err", err)
		return
	}
	a.log.Info("memory ledger", "items", a.ledger.String())
}

// withinShare returns how many connections of per bytes each (plus shared
// bytes once) fit in share, at most configured and at least one, and adds
// them to the ledger. A configured count above it is lowered (and logged):
// the share is the bound.
func (a *app) withinShare(name string, configured int, share, per, shared int64) int {
	n := int(min(int64(configured), max((share-shared)/per, 1)))
	if n < configured {
		a.log.Info("memory: connection cap lowered to the share", "what", name, "configured", configured, "cap", n,
			"share", share, "bytes_each", per)
	}
	a.ledger.Add(name, int64(n)*per+shared, true)
	return n
}

// jetstreamWithin sizes the Jetstream server's buffers to its share, for
// about target subscribers: the backlog all live subscribers share (at
// most a quarter of the share), one subscriber's queue within it, a
// client message of at most share/(2·target) (256 KiB at least; the
// configured sizes if smaller: 512 KiB still holds an options_update
// naming 10,000 DIDs) and a compressor per 16 MiB. What is left holds the
// subscribers' own bounds (jetstream.Config.SubscriberBytes).
func jetstreamWithin(c jetstream.Config, share int64, target int) jetstream.Config {
	c.BacklogBytes = int(min(int64(orDefault(c.BacklogBytes, jetstream.DefaultBacklogBytes)), max(share/4, 1)))
	c.QueueBytes = min(orDefault(c.QueueBytes, jetstream.DefaultQueueBytes), c.BacklogBytes)
	per := int(max(share/int64(2*target), 256<<10))
	c.MaxClientMessageBytes = min(orDefault(c.MaxClientMessageBytes, jetstream.DefaultMaxClientMessageBytes), per)
	c.CompressConcurrency = min(orDefault(c.CompressConcurrency, jetstream.DefaultCompressConcurrency), int(max(share>>24, 1)))
	return c
}

// Subscribers Jetstream's buffers are sized for (jetstreamWithin): a relay
// serves a few Jetstream clients beside its firehose consumers; a
// splitter, the fan-out tier, many, each allowed a smaller options_update.
const (
	relayJetstreamTarget    = 64
	splitterJetstreamTarget = 1024
)

// orDefault is v, or def when v is zero (a Config's "zero means default").
func orDefault[T int | int64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// xrpcConfig is the public API's configuration, its list requests sized
// to the HTTP share (httpRequests).
func (a *app) xrpcConfig(s *Settings, shares memory.Shares) xrpc.Config {
	c := s.XRPC
	c.MaxListsInFlight = a.httpRequests("list requests", orDefault(c.MaxListsInFlight, xrpc.DefaultMaxListsInFlight),
		shares, xrpc.ListRequestBytes)
	c.TrustedProxies = s.TrustedProxies
	c.Store, c.Engine, c.Resolver, c.Firehose, c.Metrics, c.Logger = a.store, xrpcEngine{a.relay}, a.ids, a.hub, a.metrics, a.log
	return c
}

// software names this relay in Server headers and the public banner.
const software = "relay"

// adminServer builds the admin API over eng, or returns nil (and warns)
// when no admin password is set. RELAY_ADMIN_PASSWORD (token) may list
// several, comma separated, as the reference relay's does.
func (a *app) adminServer(token string, eng admin.Engine) (*admin.Server, error) {
	tokens := admin.ParseTokens(token)
	if len(tokens) == 0 {
		a.log.Warn("RELAY_ADMIN_PASSWORD is empty: the admin API and pprof are disabled")
		return nil, nil
	}
	return admin.New(admin.Config{Store: a.store, Engine: eng, Tokens: tokens, Logger: a.log})
}

// adminHandler serves /metrics always, and the admin API and pprof behind
// the admin password when adm is set.
func (a *app) adminHandler(adm *admin.Server) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) { metrics.WritePrometheus(w, true) })
	if adm == nil {
		return mux
	}
	mux.Handle("/admin/", adm)
	mux.Handle("/debug/pprof/", adm.Protect(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/profile", adm.Protect(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/trace", adm.Protect(http.HandlerFunc(pprof.Trace)))
	mux.Handle("/debug/pprof/symbol", adm.Protect(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/cmdline", adm.Protect(http.HandlerFunc(pprof.Cmdline)))
	return mux
}

// HTTP server limits of both listeners.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	// Real clients send a few KiB; each open connection may hold this
	// much (httpConnBytes).
	maxHeaderBytes = 16 << 10
)

// readTimeout bounds reading one whole request (a variable so that a test
// can show a hijacked consumer outlives it).
var readTimeout = 30 * time.Second

// newHTTPServer returns a server with bounded headers, a bounded time to
// read a whole request and idle keep-alive connections. ReadTimeout is safe
// for the WebSocket endpoints: net/http clears a connection's deadlines when
// a handler hijacks it, and the firehose and Jetstream bound their own
// writes and ping idle consumers. There is no WriteTimeout because the
// admin listener's pprof profiles stream for as long as they are asked to.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes}
}

// run serves both listeners, starts the relay and waits for ctx to end,
// the relay to fail or a listener to fail; then it closes the app. It
// returns the first error, nil after a clean shutdown on ctx.
func (a *app) run(ctx context.Context) error {
	runErr := a.serve(ctx, func() error { return a.relay.Start(ctx) }, a.relay.Done(), a.relay.Err)
	if err := a.close(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// serve serves the listeners, then starts the engine (start) and waits for
// ctx to end, the engine to fail (done closes; failed says why) or a
// listener to fail. It returns the first error, nil when ctx ended; the
// caller closes the app either way.
func (a *app) serve(ctx context.Context, start func() error, done <-chan struct{}, failed func() error) error {
	errc := make(chan error, len(a.servers))
	for _, s := range a.servers {
		go func() { errc <- s.srv.Serve(s.ln) }()
	}
	if err := start(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		a.log.Info("shutting down")
		return nil
	case <-done:
		return failed()
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// close stops and releases whatever buildApp made, in dependency order,
// and returns the relay's close error. Stop resyncing (accounts still
// desynchronized are enqueued again at the next start), stop reading
// upstream, drain workers and sequencer, then close the listeners, the
// consumers, the resolver and the store.
func (a *app) close() error {
	var err error
	if a.resync != nil {
		a.resync.Close()
	}
	if a.relay != nil {
		err = a.relay.Close()
	}
	for _, s := range a.servers {
		_ = s.srv.Close()
		_ = s.ln.Close() // when Serve never ran
	}
	if a.hub != nil {
		a.hub.Close()
	}
	if a.js != nil {
		a.js.Close()
	}
	if a.ids != nil {
		a.ids.Close()
	}
	if a.store != nil {
		if cerr := a.store.Close(); cerr != nil {
			a.log.Error("store close", "err", cerr)
		}
	}
	if a.trim != nil {
		a.trim.Stop()
	}
	metrics.UnregisterSet(a.metrics, true)
	return err
}
