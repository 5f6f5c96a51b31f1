package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atrelay/relay/bench/attack"
	"github.com/atrelay/relay/bench/capture"
	"github.com/atrelay/relay/bench/plc"
	"github.com/atrelay/relay/bench/replay"
	"github.com/atrelay/relay/bench/testca"
)

// Harness is a prepared run: the capture's hosts and fake PLC are up and
// gated, so a relay can be started against PLCURL and Hostnames before
// Run releases the traffic. Its methods are safe for concurrent use; Run
// may be called once.
type Harness struct {
	// Static after Prepare.
	cfg     Config
	capName string
	fleet   *replay.Fleet
	sched   *schedule
	expect  int64
	caDir   string // temporary folder of caFile; "" without Config.TLS
	caFile  string // the test CA's certificate, for the relay to trust

	ran atomic.Bool // set by the first Run
	// refused are the hosts whose requestCrawl the relay answered 429
	// (Relay.CrawlRefusalsOK); written by Run before the gate opens.
	refused map[string]bool
}

// Prepare loads the capture, starts its replay hosts (gated; over TLS with
// a fresh test CA when Config.TLS) and the fake PLC (with Config.PLC's
// behaviour), and computes the send schedule. Close releases them; they
// also stop when ctx is cancelled.
func Prepare(ctx context.Context, cfg Config) (*Harness, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c, name, err := openCapture(cfg.Capture)
	if err != nil {
		return nil, err
	}
	sched, err := newSchedule(c, cfg.Speed)
	if err != nil {
		return nil, fmt.Errorf("harness: reading %s: %w", name, err)
	}
	sched.warmup = cfg.LatencyWarmup
	opts := replay.Options{Gated: true}
	if cfg.Speed > 0 {
		opts.Pacing, opts.Speed = replay.Scaled, cfg.Speed
	}
	h := &Harness{cfg: cfg, capName: name, sched: sched, expect: cfg.Expected}
	if cfg.TLS {
		if opts.TLS, err = testca.New(); err != nil {
			return nil, err
		}
		if h.caDir, err = os.MkdirTemp("", "relay-bench-ca-"); err != nil {
			return nil, err
		}
		if h.caFile, err = opts.TLS.WriteFile(h.caDir); err != nil {
			os.RemoveAll(h.caDir)
			return nil, err
		}
	}
	if h.fleet, err = replay.Start(ctx, c, opts); err != nil {
		h.removeCA()
		return nil, err
	}
	fleet := h.fleet
	if err := fleet.PLC.SetBehaviour(cfg.PLC); err != nil {
		h.Close()
		return nil, err
	}
	var served int64
	for _, host := range fleet.Replay.Hosts() {
		served += int64(host.Frames)
	}
	if served != sched.frames {
		h.Close()
		return nil, fmt.Errorf("harness: schedule counted %d frames, replay serves %d", sched.frames, served)
	}
	if h.expect == 0 {
		h.expect = served
	}
	return h, nil
}

// openCapture resolves Config.Capture.
func openCapture(spec string) (*capture.Capture, string, error) {
	c, err := capture.OpenPath(spec)
	return c, spec, err
}

// PLCURL is the fake PLC's base URL: the relay under test must use it as
// its PLC directory.
func (h *Harness) PLCURL() string { return h.fleet.PLCURL }

// Hostnames lists the replay hosts (localhost:PORT, or
// pds-N.localhost:PORT with Config.TLS), in capture source order.
func (h *Harness) Hostnames() []string { return append([]string(nil), h.fleet.Hostnames...) }

// CAFile is the test CA certificate the replay hosts' certificates chain
// to, for the relay under test to trust; "" without Config.TLS. Close
// removes it.
func (h *Harness) CAFile() string { return h.caFile }

// PLC is the fake PLC directory (its Counters say what the relay asked).
func (h *Harness) PLC() *plc.Server { return h.fleet.PLC }

// Expected is the number of events each consumer must receive.
func (h *Harness) Expected() int64 { return h.expect }

// Close stops the replay hosts and the fake PLC and removes the CA file.
func (h *Harness) Close() error {
	err := h.fleet.Close()
	h.removeCA()
	return err
}

func (h *Harness) removeCA() {
	if h.caDir != "" {
		os.RemoveAll(h.caDir)
	}
}

// Run prepares a harness for cfg, runs it against cfg.Relay and closes it:
// for relays that are configured without knowing the PLC URL.
func Run(ctx context.Context, cfg Config) (Report, error) {
	h, err := Prepare(ctx, cfg)
	if err != nil {
		return Report{}, err
	}
	defer h.Close()
	return h.Run(ctx, cfg.Relay)
}

// Run connects the consumers to the relay, asks it to crawl each replay
// host (unless relay.NoCrawl), waits until it has subscribed to all of
// them, releases the traffic and measures until every consumer has the
// expected events, Duration passes, Timeout passes or ctx ends. The report
// is complete in every case once the consumers connected; the error is
// ErrChecksFailed and/or ErrIncomplete when the run did not pass.
func (h *Harness) Run(ctx context.Context, relay Relay) (Report, error) {
	if !h.ran.CompareAndSwap(false, true) {
		return Report{}, ErrAlreadyRan
	}
	cfg := h.cfg
	subURL, err := relay.subscribeURL()
	if err != nil {
		return Report{}, err
	}
	epoch := time.Now()
	var gate atomic.Int64
	var stopping atomic.Bool
	consumers, err := h.dialAll(ctx, subURL, epoch, &gate, &stopping)
	if err != nil {
		return Report{}, err
	}
	stopConsumers := func() {
		stopping.Store(true)
		for _, c := range consumers {
			c.conn.Close()
		}
		for _, c := range consumers {
			<-c.done
		}
	}
	for _, c := range consumers {
		go c.run()
	}
	client := &http.Client{Timeout: 10 * time.Second}
	if !relay.NoCrawl {
		if err := h.crawl(ctx, client, relay); err != nil {
			stopConsumers()
			return Report{}, err
		}
	}
	if err := h.waitConnected(ctx); err != nil {
		stopConsumers()
		return Report{}, err
	}

	var attackers *attack.Set
	if cfg.Attack != nil {
		opts := *cfg.Attack
		opts.RelayAPI = relay.httpBase()
		if attackers, err = attack.Start(ctx, opts); err != nil {
			stopConsumers()
			return Report{}, err
		}
	}

	s := newSampler(cfg, relay.Metrics, client, consumers, h.expect, epoch, &gate)
	s.baseline(ctx)
	gate.Store(int64(time.Since(epoch)))
	h.fleet.Replay.Start()
	samplerCtx, stopSampler := context.WithCancel(ctx)
	var samplerDone sync.WaitGroup
	samplerDone.Add(1)
	go func() {
		defer samplerDone.Done()
		s.loop(samplerCtx)
	}()

	limit := cfg.Timeout
	if cfg.Duration > 0 {
		limit = cfg.Duration
	}
	timer := time.NewTimer(limit)
	defer timer.Stop()
	ended := "complete"
wait:
	for _, c := range consumers {
		select {
		case <-c.ready:
		case <-timer.C:
			ended = "timeout"
			if cfg.Duration > 0 {
				ended = "duration"
			}
			break wait
		case <-ctx.Done():
			ended = "cancelled"
			break wait
		}
	}
	elapsed := time.Since(epoch) - time.Duration(gate.Load())
	stopSampler()
	samplerDone.Wait()
	s.final(context.WithoutCancel(ctx))
	stopConsumers()
	var attackStats *attack.Stats
	if attackers != nil {
		st := attackers.Stop()
		attackStats = &st
	}
	if p := cfg.Progress; p != nil {
		io.WriteString(p, "\n")
	}
	rep := h.report(relay, consumers, s, ended, elapsed)
	rep.Attack = attackStats
	return rep, rep.err()
}

// dialAll connects every consumer, or none.
func (h *Harness) dialAll(ctx context.Context, url string, epoch time.Time, gate *atomic.Int64, stopping *atomic.Bool) ([]*consumer, error) {
	dctx, cancel := context.WithTimeout(ctx, h.cfg.ConnectTimeout)
	defer cancel()
	consumers := make([]*consumer, 0, h.cfg.Consumers)
	for i := range h.cfg.Consumers {
		c, err := dialConsumer(dctx, i, url, h.sched, epoch, gate, stopping, h.expect,
			h.cfg.RevCheckConsumers == 0 || i < h.cfg.RevCheckConsumers)
		if err != nil {
			for _, c := range consumers {
				c.conn.Close()
			}
			return nil, err
		}
		consumers = append(consumers, c)
	}
	return consumers, nil
}

// crawl sends requestCrawl for each replay host (spec §14.3). With
// Relay.CrawlRefusalsOK a 429 puts the host in h.refused instead of
// failing.
func (h *Harness) crawl(ctx context.Context, client *http.Client, relay Relay) error {
	endpoint := relay.httpBase() + "/xrpc/com.atproto.sync.requestCrawl"
	for _, name := range h.fleet.Hostnames {
		body, _ := json.Marshal(map[string]string{"hostname": name})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCrawl, err)
		}
		req.Header.Set("Content-Type", "application/json")
		if relay.AdminToken != "" {
			req.Header.Set("Authorization", "Bearer "+relay.AdminToken)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrCrawl, name, err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusTooManyRequests && relay.CrawlRefusalsOK:
			if h.refused == nil {
				h.refused = map[string]bool{}
			}
			h.refused[name] = true
		case resp.StatusCode != http.StatusOK:
			return fmt.Errorf("%w: %s: %s: %s", ErrCrawl, name, resp.Status, bytes.TrimSpace(msg))
		}
	}
	return nil
}

// waitConnected waits until every replay host has an open subscription,
// so no frame is released before the relay listens (a subscription
// without a cursor is live-only, spec §9.3).
func (h *Harness) waitConnected(ctx context.Context) error {
	deadline := time.NewTimer(h.cfg.ConnectTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var missing []string
		for _, st := range h.fleet.Replay.Stats() {
			if st.Open == 0 && !h.refused[st.Name] {
				missing = append(missing, st.Name)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return fmt.Errorf("%w: after %v, not subscribed to %v", ErrHostNotConnected, h.cfg.ConnectTimeout, missing)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// err turns a report's verdict into Run's error.
func (r *Report) err() error {
	var errs []error
	if len(r.Failures) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s", ErrChecksFailed, r.Failures[0]))
	}
	if !r.Complete && r.Ended != "duration" {
		errs = append(errs, fmt.Errorf("%w: run ended by %s", ErrIncomplete, r.Ended))
	}
	return errors.Join(errs...)
}
