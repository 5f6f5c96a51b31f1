package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/engine/admin"
	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/engine/jetstream"
	"github.com/atrelay/relay/engine/splitter"
	"github.com/atrelay/relay/store"
)

// `relay splitter` follows one upstream relay and serves its stream with
// the upstream's seqs (engine/splitter). Its settings are serve's storage,
// memory, listener, Jetstream and admin settings, taken from settingsTable
// by flag name so their defaults and help stay written once, plus the
// splitter's own (splitterOnly). Same environment variables, same
// precedence (default, then variable, then flag).

// splitterSettings holds every value of `relay splitter`. A plain value.
type splitterSettings struct {
	// Settings receives the entries shared with serve; the relay-only
	// parts of it stay unused.
	Settings
	Splitter splitter.Config
}

// splitterShared names the serve settings that apply to a splitter, in
// the order they are shown.
var splitterShared = []string{
	"api-listen", "admin-listen", "trusted-proxies", "max-consumers", "max-consumers-per-ip",
	"max-http-connections", "max-http-connections-per-ip",
	"data-dir", "replay-window", "disk-budget", "sync-policy", "sync-interval",
	"memory-budget", "gogc", "trim-interval", "trim", "firehose-buffer", "pebble-cache", "pebble-memtable",
	"jetstream-max-subscribers", "jetstream-max-subscribers-per-ip", "jetstream-queue-bytes", "jetstream-backlog-bytes", "jetstream-max-replays",
	"admin-password", "log-level", "log-format",
}

// groupSplitter heads the splitter's own settings.
const groupSplitter = "Upstream relay (splitter)"

// splitterOnly returns the settings serve does not have.
func splitterOnly(s *splitterSettings) []setting {
	c := &s.Splitter
	return []setting{
		{flag: "upstream", env: "RELAY_SPLITTER_UPSTREAM", group: groupSplitter, def: "",
			help: "Relay to follow (required): wss://host, ws://host:port, or an http(s) URL of the same " +
				"server; its subscribeRepos is copied, its other com.atproto.sync methods are passed through. " +
				"Another splitter works too.",
			value: stringValue(&c.Upstream)},
		{flag: "backfill", env: "RELAY_SPLITTER_BACKFILL", group: groupSplitter, def: "false",
			help: "On an empty data directory, copy the upstream's whole replay window (cursor 0) instead of " +
				"starting live; ignored once the log holds events (it always resumes after its newest seq).",
			value: boolValue(&c.Backfill)},
		{flag: "future-cursor-wait", env: "RELAY_SPLITTER_FUTURE_CURSOR_WAIT", group: groupSplitter,
			def: formatDuration(splitter.DefaultFutureCursorWait),
			help: "How long a consumer whose cursor is a little ahead of this splitter (it came from a peer " +
				"behind the same load balancer) waits for the events before getting FutureCursor. 0: the default.",
			value: durationValue(&c.FutureCursorWait)},
		{flag: "unhealthy-after", env: "RELAY_SPLITTER_UNHEALTHY_AFTER", group: groupSplitter,
			def: formatDuration(splitter.DefaultUnhealthyAfter),
			help: "How long the upstream may stay disconnected before /xrpc/_health answers 503, so a load " +
				"balancer moves consumers to a splitter that still has its upstream. 0: the default.",
			value: durationValue(&c.UnhealthyAfter)},
		{flag: "proxy-timeout", env: "RELAY_SPLITTER_PROXY_TIMEOUT", group: groupSplitter,
			def:   formatDuration(splitter.DefaultProxyTimeout),
			help:  "Deadline of one com.atproto.sync request passed through to the upstream, body included. 0: the default.",
			value: durationValue(&c.ProxyTimeout)},
		{flag: "proxy-max-in-flight", env: "RELAY_SPLITTER_PROXY_MAX_IN_FLIGHT", group: groupSplitter,
			def: fmt.Sprint(splitter.DefaultProxyMaxInFlight),
			help: "Requests passed through to the upstream at once; more get 503. Lowered to a quarter of the memory " +
				"budget's HTTP share (128 KiB each). 0: the default.",
			value: intValue(&c.ProxyMaxInFlight, 0)},
	}
}

// splitterTable returns the splitter's settings bound to s: its own first,
// then the shared ones in splitterShared order.
func splitterTable(s *splitterSettings) ([]setting, error) {
	table := splitterOnly(s)
	byFlag := map[string]setting{}
	for _, e := range settingsTable(&s.Settings) {
		byFlag[e.flag] = e
	}
	for _, name := range splitterShared {
		e, ok := byFlag[name]
		if !ok {
			return nil, fmt.Errorf("BUG: serve has no setting --%s for the splitter", name)
		}
		e.aliases = nil // the reference relay's names belong to serve
		table = append(table, e)
	}
	return table, nil
}

// parseSplitterSettings is parseSettings for the splitter's table.
func parseSplitterSettings(args []string, lookupEnv func(string) (string, bool), out io.Writer) (s *splitterSettings, printEnv bool, err error) {
	s = &splitterSettings{}
	table, err := splitterTable(s)
	if err != nil {
		return nil, false, err
	}
	fs := flag.NewFlagSet("splitter", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { writeSplitterUsage(out, table) }
	fs.BoolVar(&printEnv, "print-env", false, "")
	// Aliases are the reference relay's names for serve's settings; it has
	// no splitter, so splitterTable drops them and none is read here.
	_, errs := bindTable(fs, table, lookupEnv)
	if err := parseFlags(fs, args, errs); err != nil {
		return nil, false, err
	}
	if s.Splitter.Upstream == "" && !printEnv {
		return nil, false, errors.New("RELAY_SPLITTER_UPSTREAM (--upstream) is required")
	}
	return s, printEnv, nil
}

// writeSplitterUsage prints `relay splitter -h`.
func writeSplitterUsage(w io.Writer, table []setting) {
	writeTableUsage(w, `usage: relay splitter --upstream URL [flags]

Follows one relay's firehose into its own log, keeping the relay's seqs, and
serves it (subscribeRepos, Jetstream at GET /subscribe); the other
com.atproto.sync methods are passed through to the relay. Run several behind
a load balancer: a consumer's cursor is valid on each. Flags, variables and
units as for relay serve (relay serve -h).

  --print-env
        print an environment file (every variable with its default) and exit
`, table)
}

// splitterEnvHeader opens `relay splitter --print-env`.
const splitterEnvHeader = `# Settings of a relay splitter, read by systemd (EnvironmentFile= in
# relay-splitter@.service: /etc/relay/splitter-<instance>.env, mode 0600,
# root:root). Generated by ` + "`relay splitter --print-env`" + `; ` + "`relay splitter -h`" + `
# lists the flag each variable sets. Values shown are the defaults (data
# directory and memory budget: the unit's); an absent or empty variable means
# its default. RELAY_SPLITTER_UPSTREAM is required.
#
# MUST MATCH relay-splitter@.service: RELAY_MEMORY_BUDGET equals the unit's
# MemoryHigh, and MemoryMax stays about 12.5 % above it.
`

// writeSplitterEnv renders the splitter's environment file.
func writeSplitterEnv(w io.Writer, table []setting) error {
	return renderEnv(w, splitterEnvHeader, table, func(e *setting) (string, string) {
		switch {
		case e.flag == "data-dir":
			// The unit passes --data-dir, which wins; shown for instance 1.
			return "/var/lib/relay-splitter-1", " relay-splitter@.service passes --data-dir=/var/lib/relay-splitter-<instance>, which wins over this variable."
		case e.deploy != "":
			return e.deploy, ""
		}
		return e.def, ""
	})
}

// runSplitter is `relay splitter`, the splitter's composition root.
func runSplitter(args []string) error {
	s, printEnv, err := parseSplitterSettings(args, os.LookupEnv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if printEnv {
		table, err := splitterTable(&splitterSettings{})
		if err != nil {
			return err
		}
		return writeSplitterEnv(os.Stdout, table)
	}
	log, err := newLogger(s.LogLevel, s.LogFormat, os.Stderr)
	if err != nil {
		return err
	}
	a, err := buildSplitterApp(s, log)
	if err != nil {
		return err
	}
	return untilSignal(a.run)
}

// splitterApp holds a running splitter's components. It reuses serve's
// app for the memory set-up (tuneMemory), the store, hub, Jetstream and
// listener fields; the relay-only fields stay nil.
type splitterApp struct {
	app
	sp *splitter.Splitter
}

// buildSplitterApp sizes memory, opens the store, builds the hub, the
// splitter and Jetstream, and binds both listeners; nothing is dialed yet.
func buildSplitterApp(s *splitterSettings, log *slog.Logger) (*splitterApp, error) {
	a := &splitterApp{app: app{log: log, metrics: metrics.NewSet()}}
	metrics.RegisterSet(a.metrics)
	if err := a.build(s); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

func (a *splitterApp) build(s *splitterSettings) error {
	// The splitter's consumers get the shares of what only the relay has
	// (hosts, identities, results, resyncs): it exists to serve them.
	shares, err := a.tuneMemory(&s.Settings, true)
	if err != nil {
		return err
	}
	if err := a.openStore(&s.Settings, shares); err != nil {
		return err
	}
	if a.hub, err = firehose.NewHub(store.FirehoseLog{St: a.store}, a.firehoseConfig(&s.Settings, shares)); err != nil {
		return err
	}
	if a.js, err = jetstream.New(jetstream.StoreSource{Store: a.store}, a.jetstreamConfig(&s.Settings, shares, splitterJetstreamTarget)); err != nil {
		return err
	}
	spCfg := s.Splitter
	// Frames read and not yet stored play the part of serve's intake.
	spCfg.Software, spCfg.QueueBytes = software, int(shares.Intake)
	a.ledger.Add("intake", shares.Intake, true)
	spCfg.ProxyMaxInFlight = a.httpRequests("sync pass-through", orDefault(spCfg.ProxyMaxInFlight, splitter.DefaultProxyMaxInFlight),
		shares, splitter.ProxyRequestBytes)
	if a.sp, err = splitter.New(spCfg, splitter.Deps{Store: a.store, Hub: a.hub, OnPublish: a.js.Notify,
		Metrics: a.metrics, Logger: a.log}); err != nil {
		return err
	}
	a.checkLedger()
	// Of the admin API only the consumer list and the upstream connection
	// mean something here (splitterAdmin).
	adm, err := a.adminServer(s.AdminToken, splitterAdmin{sp: a.sp, hub: a.hub})
	if err != nil {
		return err
	}
	return a.listen(&s.Settings, shares, a.sp.Handler(), adm)
}

// run serves both listeners, starts the splitter and waits for ctx to end,
// the splitter to fail (its store) or a listener to fail; then it closes
// everything and returns the first error.
func (a *splitterApp) run(ctx context.Context) error {
	err := a.serve(ctx, a.sp.Start, a.sp.Done(), a.sp.Err)
	a.close()
	return err
}

// close stops the upstream reader and the writer, then closes the rest as
// relay serve does (app.close: listeners, consumers, Jetstream, store).
func (a *splitterApp) close() {
	if a.sp != nil {
		a.sp.Close()
	}
	_ = a.app.close() // no relay: nothing to report
}

// errNotOnSplitter answers the admin actions that manage hosts and
// accounts, which a splitter does not have.
var errNotOnSplitter = errors.New("not available on a splitter: it copies one upstream relay; use that relay's admin API")

// splitterAdmin adapts the splitter to admin.Engine: the consumer list and
// the upstream connection; every host and account action is refused.
type splitterAdmin struct {
	sp  *splitter.Splitter
	hub *firehose.Hub
}

func (e splitterAdmin) UpstreamConns() []string {
	if st := e.sp.Status(); st.Connected {
		return []string{st.Upstream}
	}
	return nil
}

func (e splitterAdmin) Consumers() []admin.Consumer { return adminEngine{hub: e.hub}.Consumers() }
func (splitterAdmin) CrawlEnabled() bool            { return false }

func (splitterAdmin) KillUpstream(context.Context, string, bool) error { return errNotOnSplitter }
func (splitterAdmin) SetCrawlEnabled(context.Context, bool) error      { return errNotOnSplitter }
func (splitterAdmin) AdminRequestCrawl(context.Context, string) error  { return errNotOnSplitter }
func (splitterAdmin) BanHost(context.Context, string) error            { return errNotOnSplitter }
func (splitterAdmin) UnbanHost(context.Context, string) error          { return errNotOnSplitter }
func (splitterAdmin) BanDomain(context.Context, string) error          { return errNotOnSplitter }
func (splitterAdmin) UnbanDomain(context.Context, string) error        { return errNotOnSplitter }
func (splitterAdmin) Takedown(context.Context, string) error           { return errNotOnSplitter }
func (splitterAdmin) ReverseTakedown(context.Context, string) error    { return errNotOnSplitter }
func (splitterAdmin) ResetCursor(context.Context, string) error        { return errNotOnSplitter }
func (splitterAdmin) Resync(context.Context, string) error             { return errNotOnSplitter }
func (splitterAdmin) SetHostLimits(context.Context, string, admin.HostLimits) error {
	return errNotOnSplitter
}
