package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/atrelay/relay/engine/admin"
	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/engine/memory"
	"github.com/atrelay/relay/engine/relay"
	"github.com/atrelay/relay/engine/resync"
	"github.com/atrelay/relay/engine/verify"
	"github.com/atrelay/relay/engine/xrpc"
	"github.com/atrelay/relay/store"
)

// serveFlags are the settings of `relay serve`; every flag defaults to its
// RELAY_* environment variable (deploy/relay.env), then to the built-in value.
type serveFlags struct {
	apiAddr, adminAddr, dataDir, plcHost, trusted, seedURL, adminToken string
	logLevel, logFormat, syncPolicy, validation                        string
	memBudget, identityBudget, diskBudget                              string
	pebbleCache, pebbleMemTable, firehoseBuffer                        string
	eventsPerSecond, trustedEventsPerSecond                            float64
	replayWindow, trimInterval, syncInterval                           time.Duration
	accountLimit                                                       uint64
	newHostsPerDay, workers, gogc                                      int
	allowInsecure, trim                                                bool
	initialSeq                                                         uint64
}

func parseServe(args []string) (*serveFlags, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	f := &serveFlags{}
	env := os.Getenv
	str := func(p *string, name, envName, def, help string) {
		fs.StringVar(p, name, envOr(envName, def), help+" (env "+envName+")")
	}
	str(&f.apiAddr, "api-listen", "RELAY_API_LISTEN", ":2470", "public API and firehose listen address")
	str(&f.adminAddr, "admin-listen", "RELAY_METRICS_LISTEN", ":2471", "admin API, /metrics and pprof listen address")
	str(&f.dataDir, "data-dir", "RELAY_DATA_DIR", "./data", "directory of the Pebble database")
	str(&f.plcHost, "plc-host", "RELAY_PLC_HOST", "https://plc.directory", "PLC directory URL")
	str(&f.trusted, "trusted-domains", "RELAY_TRUSTED_DOMAINS", "*.host.bsky.network", "comma-separated trusted host patterns: *.domain, exact names, localhost:* (any port; development)")
	str(&f.seedURL, "seed-hosts-url", "RELAY_SEED_HOSTS_URL", "https://bsky.network", "relay whose listHosts seeds an empty database; empty: off")
	str(&f.adminToken, "admin-password", "RELAY_ADMIN_PASSWORD", "", "admin API bearer token (required for the admin API)")
	str(&f.logLevel, "log-level", "RELAY_LOG_LEVEL", "info", "debug, info, warn or error")
	str(&f.logFormat, "log-format", "RELAY_LOG_FORMAT", "json", "json or text")
	str(&f.syncPolicy, "sync-policy", "RELAY_SYNC_POLICY", "every-batch", "every-batch or none")
	str(&f.validation, "validation", "RELAY_VALIDATION", "strict", "strict or lenient")
	str(&f.memBudget, "memory-budget", "RELAY_MEMORY_BUDGET", "0", "memory of the whole process (0: cgroup or MemTotal)")
	str(&f.identityBudget, "identity-cache-budget", "RELAY_IDENTITY_CACHE_BUDGET", "0", "memory for cached identities (0: 1/8 of the memory budget)")
	str(&f.pebbleCache, "pebble-cache", "RELAY_PEBBLE_CACHE", "0", "Pebble block cache (0: 1/16 of the memory budget, 8 MiB–1 GiB)")
	str(&f.pebbleMemTable, "pebble-memtable", "RELAY_PEBBLE_MEMTABLE", "0", "one Pebble memtable, up to 4 in memory (0: 1/128 of the memory budget, 4–64 MiB)")
	str(&f.firehoseBuffer, "firehose-buffer", "RELAY_FIREHOSE_BUFFER", "0", "recent frames kept in memory for consumers (0: 1/4 of the memory budget)")
	str(&f.diskBudget, "disk-budget", "RELAY_DISK_BUDGET", "0", "disk the event log may use; 0: time window only")
	var errs []error
	dur := func(p *time.Duration, name, envName string, def time.Duration, help string) {
		d := def
		if v := env(envName); v != "" {
			var err error
			if d, err = time.ParseDuration(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", envName, err))
			}
		}
		fs.DurationVar(p, name, d, help+" (env "+envName+")")
	}
	num := func(name, envName string, def int64, help string) *int64 {
		d := def
		if v := env(envName); v != "" {
			var err error
			if d, err = strconv.ParseInt(v, 10, 64); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", envName, err))
			}
		}
		return fs.Int64(name, d, help+" (env "+envName+")")
	}
	dur(&f.replayWindow, "replay-window", "RELAY_REPLAY_WINDOW", store.DefaultReplayWindow, "how long events stay replayable")
	dur(&f.syncInterval, "sync-interval", "RELAY_SYNC_INTERVAL", store.DefaultSyncInterval, "least time between two fsyncs of the event log under every-batch; 0: fsync each batch at once (at most 100ms)")
	dur(&f.trimInterval, "trim-interval", "RELAY_TRIM_INTERVAL", memory.DefaultTrimInterval, "least time between two heap trims")
	limit := num("default-account-limit", "RELAY_DEFAULT_ACCOUNT_LIMIT", relay.DefaultAccountLimit, "accounts a new host may serve")
	perDay := num("new-hosts-per-day", "RELAY_NEW_HOSTS_PER_DAY", relay.DefaultNewHostsPerDay, "new hosts accepted by requestCrawl per day")
	workers := num("workers", "RELAY_WORKERS", 0, "validation workers; 0: GOMAXPROCS")
	gogc := num("gogc", "RELAY_GOGC", memory.DefaultGOGC, "Go GC target percentage; -1: off")
	initial := num("initial-seq", "RELAY_INITIAL_SEQ", 1, "first seq of a new database")
	flt := func(p *float64, name, envName string, def float64, help string) {
		d := def
		if v := env(envName); v != "" {
			var err error
			if d, err = strconv.ParseFloat(v, 64); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", envName, err))
			}
		}
		fs.Float64Var(p, name, d, help+" (env "+envName+")")
	}
	flt(&f.eventsPerSecond, "events-per-second", "RELAY_EVENTS_PER_SECOND", relay.DefaultEventsPerSecond,
		"an untrusted host's base event rate, plus its account limit / 1000")
	flt(&f.trustedEventsPerSecond, "trusted-events-per-second", "RELAY_TRUSTED_EVENTS_PER_SECOND", relay.DefaultTrustedEventsPerSecond,
		"a trusted host's event rate; faster events wait, none is dropped")
	trimOn := fs.Bool("trim", env("RELAY_TRIM") != "false", "run the FreeOSMemory heap trimmer (env RELAY_TRIM; false turns it off, for measurements)")
	insecure := fs.Bool("allow-insecure-hosts", env("RELAY_ALLOW_INSECURE_HOSTS") == "true", "accept localhost:PORT hosts over ws:// (development; env RELAY_ALLOW_INSECURE_HOSTS)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if *limit < 0 || *perDay < 0 || *workers < 0 || *initial < 1 {
		return nil, fmt.Errorf("serve: negative limit, worker count or initial seq")
	}
	f.accountLimit, f.newHostsPerDay, f.workers, f.gogc = uint64(*limit), int(*perDay), int(*workers), int(*gogc)
	f.initialSeq, f.allowInsecure, f.trim = uint64(*initial), *insecure, *trimOn
	return f, nil
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want json or text", format)
}

func runServe(args []string) error {
	f, err := parseServe(args)
	if err != nil {
		return err
	}
	log, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	budget, err := memory.ParseBytes(f.memBudget)
	if err != nil {
		return fmt.Errorf("RELAY_MEMORY_BUDGET: %w", err)
	}
	var over sizeOverrides
	for _, x := range []struct {
		dst       *int64
		val, name string
	}{{&over.identity, f.identityBudget, "RELAY_IDENTITY_CACHE_BUDGET"}, {&over.cache, f.pebbleCache, "RELAY_PEBBLE_CACHE"},
		{&over.memTable, f.pebbleMemTable, "RELAY_PEBBLE_MEMTABLE"}, {&over.ring, f.firehoseBuffer, "RELAY_FIREHOSE_BUFFER"}} {
		if *x.dst, err = memory.ParseBytes(x.val); err != nil {
			return fmt.Errorf("%s: %w", x.name, err)
		}
	}
	disk, err := memory.ParseBytes(f.diskBudget)
	if err != nil {
		return fmt.Errorf("RELAY_DISK_BUDGET: %w", err)
	}
	set := metrics.NewSet()
	metrics.RegisterSet(set)
	memCfg := memory.Config{Budget: budget, OffHeapOf: func(b int64) int64 { return over.apply(b).OffHeap() },
		GOGC: f.gogc, TrimInterval: f.trimInterval}
	if !memory.TuneCAllocator() {
		log.Warn("memory: the C allocator refused a setting (see memory.TuneCAllocator)")
	}
	settings, err := memory.Apply(memCfg, log)
	if err != nil {
		return err
	}
	shares := over.apply(settings.Budget)
	memCfg.TrimThreshold = shares.TrimThreshold
	log.Info("memory shares", "budget", settings.Budget, "pebble_cache", shares.BlockCache, "pebble_memtable", shares.MemTable,
		"firehose_buffer", shares.Ring, "identity_cache", shares.IdentityCache, "intake", shares.Intake,
		"results", shares.Results, "trim_threshold", shares.TrimThreshold)
	memory.RegisterRuntimeMetrics(set, settings)
	trim, err := memory.NewTrimmer(memCfg, set, log)
	if err != nil {
		return err
	}
	if f.trim {
		if err := trim.Start(); err != nil {
			return err
		}
		defer trim.Stop()
	} else {
		log.Info("heap trimmer off")
	}

	sync := store.SyncEveryBatch
	switch f.syncPolicy {
	case "every-batch":
	case "none":
		sync = store.NoSync
	default:
		return fmt.Errorf("RELAY_SYNC_POLICY %q: want every-batch or none", f.syncPolicy)
	}
	mode := verify.Strict
	switch f.validation {
	case "strict":
	case "lenient":
		mode = verify.Lenient
	default:
		return fmt.Errorf("RELAY_VALIDATION %q: want strict or lenient", f.validation)
	}
	if err := os.MkdirAll(f.dataDir, 0o750); err != nil {
		return err
	}
	st, err := store.Open(f.dataDir, store.Options{InitialSeq: store.Seq(f.initialSeq), Sync: sync, SyncInterval: f.syncInterval,
		ReplayWindow: f.replayWindow, DiskBudgetBytes: uint64(disk),
		BlockCacheBytes: shares.BlockCache, MemTableBytes: uint64(shares.MemTable)})
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("store close", "err", err)
		}
	}()
	st.RegisterMetrics(set)
	ids := identity.New(identity.Config{PLCURL: f.plcHost, AllowInsecure: f.allowInsecure, MaxCacheBytes: shares.IdentityCache, Metrics: set})
	defer ids.Close()
	hub, err := firehose.NewHub(relay.StoreLog{St: st}, firehose.Config{RingBytes: int(shares.Ring), Metrics: set, Logger: log})
	if err != nil {
		return err
	}
	defer hub.Close()
	var trusted []string
	for _, p := range strings.Split(f.trusted, ",") {
		if p = strings.TrimSpace(p); p != "" {
			trusted = append(trusted, p)
		}
	}
	// The resyncer reports into the relay, which does not exist yet: r is
	// assigned before Start, and nothing is enqueued before Start, so every
	// OnResult sees it (the Enqueue channel orders the two).
	var r *relay.Relay
	rs, err := resync.New(resync.Config{Identities: ids, AllowInsecure: f.allowInsecure, Metrics: set, Logger: log,
		OnResult: func(did string, res resync.Result) { r.OnResyncResult(did, res) }})
	if err != nil {
		return err
	}
	defer rs.Close()
	r, err = relay.New(relay.Config{
		AllowInsecureHosts: f.allowInsecure, DefaultAccountLimit: f.accountLimit, TrustedDomains: trusted,
		NewHostsPerDay: f.newHostsPerDay, SeedHostsURL: f.seedURL, Workers: f.workers, Validation: mode,
		EventsPerSecond: f.eventsPerSecond, TrustedEventsPerSecond: f.trustedEventsPerSecond,
		IntakeBytes: shares.Intake, ResultsQueueBytes: shares.Results,
	}, relay.Deps{Store: st, Identity: ids, Hub: hub, Resyncer: rs, Logger: log, Metrics: set})
	if err != nil {
		return err
	}
	api, err := xrpc.New(xrpc.Config{Store: st, Engine: xrpcEngine{r}, Resolver: ids, Firehose: hub, Metrics: set, Logger: log})
	if err != nil {
		return err
	}
	adminMux := http.NewServeMux()
	adminMux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) { metrics.WritePrometheus(w, true) })
	if f.adminToken != "" {
		adm, err := admin.New(admin.Config{Store: st, Engine: adminEngine{r: r, hub: hub}, Token: f.adminToken, Logger: log})
		if err != nil {
			return err
		}
		adminMux.Handle("/admin/", adm)
		adminMux.Handle("/debug/pprof/", adm.Protect(http.HandlerFunc(pprof.Index)))
		adminMux.Handle("/debug/pprof/profile", adm.Protect(http.HandlerFunc(pprof.Profile)))
		adminMux.Handle("/debug/pprof/trace", adm.Protect(http.HandlerFunc(pprof.Trace)))
		adminMux.Handle("/debug/pprof/symbol", adm.Protect(http.HandlerFunc(pprof.Symbol)))
		adminMux.Handle("/debug/pprof/cmdline", adm.Protect(http.HandlerFunc(pprof.Cmdline)))
	} else {
		log.Warn("RELAY_ADMIN_PASSWORD is empty: the admin API and pprof are disabled")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 2)
	var servers []*http.Server
	for _, s := range []struct {
		addr string
		h    http.Handler
	}{{f.apiAddr, api}, {f.adminAddr, adminMux}} {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			_ = r.Close()
			return err
		}
		log.Info("listening", "addr", ln.Addr().String())
		srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() { errc <- srv.Serve(ln) }()
	}
	if err := r.Start(ctx); err != nil {
		_ = r.Close()
		return err
	}
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case <-r.Done():
		runErr = r.Err()
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = err
		}
	}
	// Stop resyncing (accounts still desynchronized are enqueued again at
	// the next start), stop reading upstream, drain workers and sequencer,
	// then close the consumers and the listeners; deferred calls close the
	// hub and store.
	rs.Close()
	if err := r.Close(); err != nil && runErr == nil {
		runErr = err
	}
	for _, s := range servers {
		_ = s.Close()
	}
	return runErr
}

// sizeOverrides are the explicitly configured sizes; zero fields take their
// share of the memory budget.
type sizeOverrides struct{ identity, cache, memTable, ring int64 }

// apply returns the budget's shares with the overrides in place.
func (o sizeOverrides) apply(budget int64) memory.Shares {
	sh := memory.SharesOf(budget)
	for _, x := range []struct {
		dst *int64
		v   int64
	}{{&sh.IdentityCache, o.identity}, {&sh.BlockCache, o.cache}, {&sh.MemTable, o.memTable}, {&sh.Ring, o.ring}} {
		if x.v > 0 {
			*x.dst = x.v
		}
	}
	return sh
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
