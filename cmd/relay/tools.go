package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/atrelay/relay/bench/capture"
	"github.com/atrelay/relay/bench/fleet"
	"github.com/atrelay/relay/bench/generate"
	"github.com/atrelay/relay/bench/replay"
	"github.com/atrelay/relay/engine/atproto/atcrypto"
)

// The capture, replay and generate subcommands: thin flag front ends over
// bench/capture, bench/replay and bench/generate, which hold the logic.

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// runCapture records one or more subscribeRepos endpoints into a capture file.
func runCapture(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("capture", flag.ContinueOnError)
	out := fs.String("out", "capture.cap", "capture file to write")
	maxFrames := fs.Int64("frames", 0, "stop after this many frames (0: until interrupted or -duration)")
	dur := fs.Duration("duration", 0, "stop after this long (0: until interrupted or -frames)")
	plcURL := fs.String("plc", "", "PLC directory to fetch every seen did:plc document from, for offline verification")
	note := fs.String("note", "", "free-form note stored in the capture header")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("usage: relay capture [flags] ws://host/xrpc/com.atproto.sync.subscribeRepos[?cursor=N] ...")
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	ctx, cancel := signalContext()
	defer cancel()
	w := bufio.NewWriterSize(f, 1<<20)
	st, err := capture.Recorder{
		URLs: fs.Args(), MaxFrames: *maxFrames, MaxDuration: *dur, PLC: *plcURL,
		Note: *note, Progress: stdout,
	}.Run(ctx, w)
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nrecorded %d frames, %d bytes, %d DIDs, %d documents in %s -> %s\n",
		st.Frames, st.Bytes, st.DIDs, st.Docs, st.Elapsed.Round(time.Millisecond), *out)
	return f.Sync()
}

// runReplay serves a capture as its original set of hosts plus a fake PLC.
func runReplay(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	speed := fs.String("speed", "1", "pacing: a multiple of real speed (1 = real time), or max")
	gated := fs.Bool("gated", false, "hold all frames until Enter is pressed on stdin")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: relay replay [flags] <capture file | shared-format folder>")
	}
	c, err := capture.OpenPath(fs.Arg(0))
	if err != nil {
		return err
	}
	opts := replay.Options{Gated: *gated}
	if *speed == "max" {
		opts.Pacing = replay.AsFastAsPossible
	} else {
		opts.Pacing = replay.Scaled
		if _, err := fmt.Sscanf(*speed, "%g", &opts.Speed); err != nil || opts.Speed <= 0 {
			return fmt.Errorf("bad -speed %q", *speed)
		}
	}
	ctx, cancel := signalContext()
	defer cancel()
	fl, err := replay.Start(ctx, c, opts)
	if err != nil {
		return err
	}
	defer fl.Close()
	fmt.Fprintf(stdout, "fake PLC: %s\nhosts (%d): %s\n", fl.PLCURL, len(fl.Hostnames), strings.Join(fl.Hostnames, " "))
	fmt.Fprintf(stdout, "start the relay with --allow-insecure-hosts --plc-host %s and requestCrawl each host\n", fl.PLCURL)
	if *gated {
		fmt.Fprintln(stdout, "press Enter to release the traffic")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		fl.Replay.Start()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout)
			return nil
		case <-tick.C:
			var sent, conns int64
			for _, h := range fl.Replay.Stats() {
				sent += h.FramesSent
				conns += int64(h.Open)
			}
			fmt.Fprintf(stdout, "\rframes sent %d, open subscriptions %d   ", sent, conns)
		}
	}
}

// runGenerate writes a synthetic capture from the fleet's workload model.
func runGenerate(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	out := fs.String("out", "generated.cap", "capture file to write")
	hosts := fs.Int("hosts", 100, "PDS hosts")
	accounts := fs.Int("accounts", 10, "accounts per host")
	rate := fs.Float64("rate", 1000, "events per second of the modelled traffic (sets the receive times)")
	actions := fs.Int("actions", 100_000, "planned actions after account creation (about one event each)")
	curve := fs.String("curve", "k256", "signing curve: k256 or p256")
	seed := fs.Uint64("seed", 1, "random seed")
	population := fs.Int("population", 0, "accounts that exist before the capture (replaces -accounts and account creation; see bench/generate)")
	popSkew := fs.Float64("population-skew", 0.7, "power-law exponent of the actions over the -population accounts (below 1: most accounts act)")
	popRecords := fs.Int("population-records", 3, "posts each pre-existing repository holds before the capture")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pop := generate.Population{Accounts: *population, Skew: *popSkew, InitialRecords: *popRecords}
	if pop.InitialRecords == 0 {
		pop.InitialRecords = -1 // the option's zero means the default
	}
	wl := fleet.Workload{Hosts: *hosts, AccountsPerHost: *accounts, EventsPerSecond: *rate, Seed: *seed}
	switch *curve {
	case "k256":
		wl.Curve = atcrypto.K256
	case "p256":
		wl.Curve = atcrypto.P256
	default:
		return fmt.Errorf("bad -curve %q", *curve)
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	note := fmt.Sprintf("generated: %d hosts x %d accounts, %g events/s, %d actions", *hosts, *accounts, *rate, *actions)
	if pop.Accounts > 0 {
		note = fmt.Sprintf("generated: %d hosts, %d pre-existing accounts (skew %g, %d records), %g events/s, %d actions",
			*hosts, pop.Accounts, pop.Skew, *popRecords, *rate, *actions)
	}
	st, err := generate.Generate(w, generate.Options{Workload: wl, Actions: *actions, Population: pop, Note: note})
	if err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d frames (%d bytes, %d accounts, %d with events) in %s: %.0f frames/s -> %s\n",
		st.Frames, st.Bytes, st.Accounts, st.Touched, st.Elapsed.Round(time.Millisecond), st.FramesPerSecond(), *out)
	return f.Sync()
}
