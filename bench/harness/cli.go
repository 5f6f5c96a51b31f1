package harness

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/atrelay/relay/bench/attack"
	"github.com/atrelay/relay/bench/diskmodel"
	"github.com/atrelay/relay/bench/jsload"
	"github.com/atrelay/relay/bench/plc"
)

// ErrRelayNotReady: the relay's _health did not answer 200 in time.
var ErrRelayNotReady = errors.New("harness: relay not ready")

// ErrRelayAddrBusy: --relay-cmd was given but a relay already answers at
// --relay-api, so the child could not listen there and the run would
// measure the other one.
var ErrRelayAddrBusy = errors.New("harness: a relay already answers at the relay API address")

// ErrRelayExited: the child relay exited before the run ended.
var ErrRelayExited = errors.New("harness: the child relay exited")

// RunCLI runs the harness from command-line arguments (the `relay bench`
// command), writing the PLC URL, hosts, progress and summary to stdout.
// With first argument "chart" it instead draws reports into a PNG:
//
//	bench [--capture shared|DIR|FILE] [--relay-api URL] [--relay-metrics URL] ...
//	bench chart --out mem.png run1.json[=label] run2.json[=label] ...
//	bench disk --capture FILE --dir DIR [--window 72h] [--time-scale S]  (bench/diskmodel)
func RunCLI(args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "chart" {
		return runChartCLI(args[1:], stdout)
	}
	if len(args) > 0 && args[0] == "jetstream" {
		return jsload.RunCLI(args[1:], stdout)
	}
	if len(args) > 0 && args[0] == "disk" {
		return diskmodel.RunCLI(args[1:], stdout)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var (
		capturePath = fs.String("capture", DefaultCapture, "capture to replay: a shared-format folder (the default is the reference-PDS capture in a checkout) or a capture file")
		api         = fs.String("relay-api", "http://127.0.0.1:2470", "relay public API base URL")
		metricsURL  = fs.String("relay-metrics", "", "relay Prometheus metrics URL, e.g. http://127.0.0.1:2471/metrics")
		token       = fs.String("admin-token", "", "bearer token sent with requestCrawl")
		consumers   = fs.Int("consumers", 10, "subscribeRepos consumers")
		revChecks   = fs.Int("rev-check-consumers", 0, "how many consumers (the first ones) also check every DID's revs move forward, keeping a map of every DID (0: all)")
		speed       = fs.String("speed", "max", `pacing: "max" (as fast as possible) or N (N times real speed)`)
		duration    = fs.Duration("duration", 0, "stop after this long (0: when every consumer has every event)")
		warmup      = fs.Duration("latency-warmup", 0, "paced runs: leave commits released in the first DURATION out of the latency figures (still checked)")
		timeout     = fs.Duration("timeout", 10*time.Minute, "give up on an unfinished run after this long")
		connectTO   = fs.Duration("connect-timeout", 30*time.Second, "wait this long for the relay to be ready and subscribe to the hosts")
		expected    = fs.Int64("expected", 0, "events each consumer must receive (0: every replayed frame)")
		jsonOut     = fs.String("json", "", "write the report as JSON to this file")
		pngOut      = fs.String("png", "", "write the memory chart as PNG to this file")
		noCrawl     = fs.Bool("no-crawl", false, "do not send requestCrawl (relay already configured with the hosts)")
		refusalsOK  = fs.Bool("crawl-refusals-ok", false, "leave out hosts whose requestCrawl the relay answers 429 (a budget holding fewer hosts) instead of failing; needs --duration")
		relayCmd    = fs.String("relay-cmd", "", "start the relay as a child with this command line; {plc}, {hosts} (comma separated) and {ca} (the test CA file, with --tls) are substituted")
		relayLog    = fs.String("relay-log", "", "file for the child relay's output (default: discarded)")
		quiet       = fs.Bool("quiet", false, "no live progress line")
		attackOn    = fs.Bool("attack", false, "run the hostile hosts and floods of bench/attack against the relay during the run (the relay must allow development hosts)")
		cpuProfile  = fs.String("cpuprofile", "", "write a CPU profile of the harness itself (replayer, PLC, consumers) during the run to this file")
		useTLS      = fs.Bool("tls", false, "replay hosts serve wss:// and https:// as pds-N.localhost:PORT with a test CA generated for the run; the relay must trust the CA file ({ca} in --relay-cmd)")
		plcFlags    = plc.Flags(fs)
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	plcBehaviour, err := plcFlags()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	if strings.Contains(*relayCmd, "{ca}") && !*useTLS {
		return fmt.Errorf("%w: {ca} in --relay-cmd needs --tls", ErrBadConfig)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", ErrBadConfig, fs.Args())
	}
	cfg := Config{
		Capture: *capturePath, Consumers: *consumers, RevCheckConsumers: *revChecks, Duration: *duration, Timeout: *timeout,
		ConnectTimeout: *connectTO, Expected: *expected, LatencyWarmup: *warmup,
		Relay: Relay{API: *api, Metrics: *metricsURL, AdminToken: *token, NoCrawl: *noCrawl, CrawlRefusalsOK: *refusalsOK},
		TLS:   *useTLS, PLC: plcBehaviour,
	}
	if *speed != "max" {
		v, err := strconv.ParseFloat(*speed, 64)
		if err != nil || v <= 0 {
			return fmt.Errorf("%w: --speed %q: want max or a positive number", ErrBadConfig, *speed)
		}
		cfg.Speed = v
	}
	if !*quiet {
		cfg.Progress = stdout
	}
	if *attackOn {
		cfg.Attack = &attack.Options{}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	h, err := Prepare(ctx, cfg)
	if err != nil {
		return err
	}
	defer h.Close()
	fmt.Fprintf(stdout, "fake PLC: %s\nreplay hosts: %s\nexpected events per consumer: %d\n",
		h.PLCURL(), strings.Join(h.Hostnames(), " "), h.Expected())
	if h.CAFile() != "" {
		fmt.Fprintf(stdout, "test CA (trust it in the relay, for tests only): %s\n", h.CAFile())
	}
	if *relayCmd != "" {
		if healthy(ctx, cfg.Relay) {
			return fmt.Errorf("%w: %s", ErrRelayAddrBusy, cfg.Relay.httpBase())
		}
		child, err := startRelay(*relayCmd, *relayLog, h)
		if err != nil {
			return err
		}
		defer child.stop()
		// A child that dies (a port taken, a bad flag, a crash) ends the
		// run at once instead of leaving it to its timeout.
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		go func() {
			<-child.exited
			cancel(fmt.Errorf("%w: %v", ErrRelayExited, child.err))
		}()
	}
	if err := waitHealthy(ctx, cfg.Relay, *connectTO); err != nil {
		return err
	}
	if *cpuProfile != "" {
		stopProfile, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	rep, runErr := h.Run(ctx, cfg.Relay)
	if cause := context.Cause(ctx); errors.Is(cause, ErrRelayExited) {
		runErr = errors.Join(runErr, cause)
	}
	if rep.ConsumerResults == nil {
		return runErr // nothing ran
	}
	if err := rep.WriteSummary(stdout); err != nil {
		return err
	}
	if *jsonOut != "" {
		if err := writeFile(*jsonOut, rep.WriteJSON); err != nil {
			return err
		}
	}
	if *pngOut != "" {
		err := writeFile(*pngOut, func(w io.Writer) error { return WriteMemoryPNG(w, []Report{rep}, nil) })
		if err != nil {
			return err
		}
	}
	return runErr
}

// startCPUProfile starts profiling this process's CPU into path; the
// returned function stops it and closes the file. It shows where the load
// generator's own share of the machine goes.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// runChartCLI draws the memory chart of one or more JSON reports.
func runChartCLI(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench chart", flag.ContinueOnError)
	fs.SetOutput(stdout)
	out := fs.String("out", "memory.png", "PNG file to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: bench chart needs report JSON files", ErrBadConfig)
	}
	var reports []Report
	var names []string
	for _, arg := range fs.Args() {
		path, name, _ := strings.Cut(arg, "=")
		r, err := ReadReport(path)
		if err != nil {
			return err
		}
		reports = append(reports, r)
		names = append(names, name)
	}
	return writeFile(*out, func(w io.Writer) error { return WriteMemoryPNG(w, reports, names) })
}

// writeFile creates path and fills it with write.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// probeHealth asks relay's _health once: nil when it answers 200. A request
// that cannot be built is a configuration error (ErrBadConfig).
func probeHealth(ctx context.Context, client *http.Client, relay Relay) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, relay.httpBase()+"/xrpc/_health", nil)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// healthy reports whether a relay answers _health at relay's API address
// right now.
func healthy(ctx context.Context, relay Relay) bool {
	return probeHealth(ctx, &http.Client{Timeout: time.Second}, relay) == nil
}

// waitHealthy polls relay's _health until it answers 200, timeout passes
// or ctx ends (returning its cause).
func waitHealthy(ctx context.Context, relay Relay, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		err := probeHealth(ctx, client, relay)
		if err == nil || errors.Is(err, ErrBadConfig) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s: %w", ErrRelayNotReady, relay.httpBase()+"/xrpc/_health", err)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// childRelay is a relay process the CLI started; owned by RunCLI.
type childRelay struct {
	cmd    *exec.Cmd
	log    *os.File      // nil when output is discarded
	exited chan struct{} // closed when the child has exited; err is set before
	err    error         // cmd.Wait's result; read only after exited is closed
}

// startRelay starts the relay command line with {plc}, {hosts} and {ca}
// substituted.
func startRelay(cmdline, logPath string, h *Harness) (*childRelay, error) {
	r := strings.NewReplacer("{plc}", h.PLCURL(), "{hosts}", strings.Join(h.Hostnames(), ","), "{ca}", h.CAFile())
	argv := strings.Fields(r.Replace(cmdline))
	if len(argv) == 0 {
		return nil, fmt.Errorf("%w: empty --relay-cmd", ErrBadConfig)
	}
	c := &childRelay{cmd: exec.Command(argv[0], argv[1:]...)}
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		c.log = f
		c.cmd.Stdout, c.cmd.Stderr = f, f
	}
	if err := c.cmd.Start(); err != nil {
		if c.log != nil {
			c.log.Close()
		}
		return nil, err
	}
	c.exited = make(chan struct{})
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// stop interrupts the child, and kills it if it has not exited in 10 s.
func (c *childRelay) stop() {
	c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
	if c.log != nil {
		c.log.Close()
	}
}
