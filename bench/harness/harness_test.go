package harness

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// The stand-in relay is a replay host itself: consumers subscribe to it
// directly and nothing is crawled.
func TestStandInReplayHost(t *testing.T) {
	path, commits := smallCapture(t, 1, 400)
	cfg := quietConfig(path, 3)
	var progress bytes.Buffer
	cfg.Progress = &progress
	h, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.Expected() != 400 || len(h.Hostnames()) != 1 || !strings.HasPrefix(h.PLCURL(), "http://127.0.0.1:") {
		t.Fatalf("expected %d, hosts %v, plc %q", h.Expected(), h.Hostnames(), h.PLCURL())
	}
	rep, err := h.Run(context.Background(), Relay{API: "http://" + h.Hostnames()[0], NoCrawl: true})
	if err != nil {
		t.Fatalf("run: %v\nfailures: %v", err, rep.Failures)
	}
	if !rep.OK || !rep.Complete || rep.Ended != "complete" {
		t.Fatalf("ok %v complete %v ended %s", rep.OK, rep.Complete, rep.Ended)
	}
	for _, c := range rep.ConsumerResults {
		if c.Events != 400 || c.FirstSeq != 1 || c.LastSeq != 400 || c.Gaps+c.Backward+c.RevBackward+c.Undecodable != 0 {
			t.Errorf("consumer %+v", c)
		}
		if c.Latency.Count != int64(commits) || c.LatencyUnmatched != 0 {
			t.Errorf("consumer %d: %d latencies, %d unmatched, want %d commits", c.ID, c.Latency.Count, c.LatencyUnmatched, commits)
		}
	}
	if rep.Latency.Count != int64(3*commits) || rep.Latency.MaxMs <= 0 || rep.Latency.P50Ms > rep.Latency.P99Ms {
		t.Errorf("latency %+v", rep.Latency)
	}
	if cold := coldCommits(t, path); rep.LatencyKnown.Count != int64(3*(commits-cold)) {
		t.Errorf("%d known-account latencies, want %d (%d commits, %d of them cold)",
			rep.LatencyKnown.Count, 3*(commits-cold), commits, cold)
	}
	if rep.IngestSource != ingestFromConsumer0 || rep.EventsPerSec <= 0 || len(rep.Samples) < 2 {
		t.Errorf("source %s, rate %v, %d samples", rep.IngestSource, rep.EventsPerSec, len(rep.Samples))
	}
	if !strings.Contains(progress.String(), "\r") || !strings.Contains(progress.String(), "events 400/400") {
		t.Errorf("progress %q", progress.String())
	}
	m := reportKeys(t, rep)
	for _, k := range []string{"capture", "relayApi", "plcUrl", "hosts", "pacing", "consumers", "expectedEvents",
		"ended", "complete", "ok", "failures", "elapsedSeconds", "eventsPerSec", "latency", "peak",
		"consumerResults", "samples", "ingestSource"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report JSON lacks %q", k)
		}
	}
	samples := m["samples"].([]any)
	for _, k := range []string{"t", "ingestedPerSec", "deliveredPerSec", "eventsDelivered", "maxLag"} {
		if _, ok := samples[len(samples)-1].(map[string]any)[k]; !ok {
			t.Errorf("sample JSON lacks %q", k)
		}
	}
	var sum bytes.Buffer
	if err := rep.WriteSummary(&sum); err != nil || !strings.Contains(sum.String(), "PASS") {
		t.Errorf("summary %v:\n%s", err, sum.String())
	}
	if _, err := h.Run(context.Background(), Relay{API: "http://" + h.Hostnames()[0], NoCrawl: true}); !errors.Is(err, ErrAlreadyRan) {
		t.Errorf("second run: %v", err)
	}
}

// Scaled pacing: latency is measured from each commit's scheduled release.
func TestStandInScaled(t *testing.T) {
	path, commits := smallCapture(t, 1, 120)
	cfg := quietConfig(path, 2)
	cfg.Speed = 1000
	h, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rep, err := h.Run(context.Background(), Relay{API: "ws://" + h.Hostnames()[0], NoCrawl: true})
	if err != nil {
		t.Fatalf("run: %v %v", err, rep.Failures)
	}
	if rep.Pacing != "x1000" || rep.LatencyFrom != "schedule" || rep.Latency.Count != int64(2*commits) {
		t.Fatalf("pacing %s from %s, %d latencies", rep.Pacing, rep.LatencyFrom, rep.Latency.Count)
	}
	if h.sched.last <= 0 {
		t.Errorf("schedule spans %v", h.sched.last)
	}

	// With a warm-up, only commits released after it are timed; every
	// event is still delivered and checked.
	cfg.LatencyWarmup = h.sched.last / 2
	hw, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer hw.Close()
	var timed int64
	for _, off := range hw.sched.sendAt {
		if off >= cfg.LatencyWarmup {
			timed++
		}
	}
	if timed == 0 || timed == int64(commits) {
		t.Fatalf("warm-up %v times %d of %d commits: pick another", cfg.LatencyWarmup, timed, commits)
	}
	rep, err = hw.Run(context.Background(), Relay{API: "ws://" + hw.Hostnames()[0], NoCrawl: true})
	if err != nil {
		t.Fatalf("run with warm-up: %v %v", err, rep.Failures)
	}
	if rep.Latency.Count != 2*timed || !strings.HasPrefix(rep.LatencyFrom, "schedule, after") {
		t.Fatalf("warm-up run: %d latencies from %q, want %d", rep.Latency.Count, rep.LatencyFrom, 2*timed)
	}
}

// Through a stand-in relay that crawls, re-sequences and serves metrics.
func TestMiniRelay(t *testing.T) {
	path, commits := smallCapture(t, 2, 150)
	mr := newMiniRelay(t, 0, 0)
	cfg := quietConfig(path, 4)
	cfg.Relay = Relay{API: mr.api, Metrics: mr.metricsURL, AdminToken: "secret"}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("run: %v %v", err, rep.Failures)
	}
	if rep.ExpectedEvents != 300 || rep.IngestSource != ingestFromMetrics || rep.ScrapeErrors != 0 {
		t.Fatalf("expected %d, source %s, scrape errors %d (%s)", rep.ExpectedEvents, rep.IngestSource, rep.ScrapeErrors, rep.LastScrapeError)
	}
	if rep.Latency.Count != int64(4*commits) {
		t.Errorf("%d latencies, want %d", rep.Latency.Count, 4*commits)
	}
	last := rep.Samples[len(rep.Samples)-1]
	if last.RSSBytes <= 0 || last.HeapInuseBytes <= 0 || last.IngestedTotal != 300 || last.DropsTotal != 3 {
		t.Errorf("last sample %+v", last)
	}
	if rep.Peak.RSSBytes <= 0 || rep.Drops[`relay_ingest_dropped_total{reason="bad_sig"}`] != 3 {
		t.Errorf("peak %+v drops %v", rep.Peak, rep.Drops)
	}
	// Without a warm-up the relay's share counts every event; the
	// histogram the stand-in does not have is left out.
	if share, ok := rep.RelayShare["relay_pipeline_seconds"]; !ok || share.Count != 300 || len(rep.RelayShare) != 1 {
		t.Errorf("relay share %+v", rep.RelayShare)
	}
	if m := rep.Memory; m == nil || m.Samples < 1 || m.RSSOverHeap.P50 <= 1 || m.RSSOverInUse.Max <= 0 {
		t.Errorf("memory %+v", m)
	}
}

// A relay stream with a gap and a duplicate fails the checks.
func TestMiniRelayFaults(t *testing.T) {
	path, _ := smallCapture(t, 1, 200)
	mr := newMiniRelay(t, 40, 120)
	cfg := quietConfig(path, 2)
	cfg.Relay = Relay{API: mr.api}
	rep, err := Run(context.Background(), cfg)
	if !errors.Is(err, ErrChecksFailed) {
		t.Fatalf("err %v", err)
	}
	if rep.OK {
		t.Fatal("report OK despite faults")
	}
	for _, c := range rep.ConsumerResults {
		if c.Gaps != 1 || c.Missing != 1 || c.Backward != 1 || c.RevBackward != 1 {
			t.Errorf("consumer %+v", c)
		}
	}
	for _, want := range []string{"seq gaps", "did not rise", "rev not above"} {
		if !hasFailure(rep, want) {
			t.Errorf("no failure mentioning %q in %v", want, rep.Failures)
		}
	}
}

// With CrawlRefusalsOK a relay that answers 429 to some requestCrawls
// gets a run over the hosts it admitted: every event of those, in order,
// the refused hosts counted in the report; without it the run fails.
func TestCrawlRefusalsOK(t *testing.T) {
	path, _ := smallCapture(t, 2, 60)
	mr := newMiniRelay(t, 0, 0)
	mr.maxHosts.Store(1)
	cfg := quietConfig(path, 1)
	cfg.Relay = Relay{API: mr.api}
	if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrCrawl) {
		t.Fatalf("a refused requestCrawl without CrawlRefusalsOK: %v, want ErrCrawl", err)
	}

	mr = newMiniRelay(t, 0, 0)
	mr.maxHosts.Store(1)
	cfg.Relay = Relay{API: mr.api, CrawlRefusalsOK: true}
	cfg.Duration = 2 * time.Second
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := rep.ConsumerResults[0]
	if rep.HostsRefused != 1 || c.Events != 60 || c.Gaps+c.Backward != 0 {
		t.Fatalf("refused %d, consumer %+v; want 1 refused and the 60 events of the other host", rep.HostsRefused, c)
	}
	cfg.Duration = 0
	if _, err := Prepare(context.Background(), cfg); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("CrawlRefusalsOK without a Duration: %v, want ErrBadConfig", err)
	}
}

// With RevCheckConsumers 1 only the first consumer checks revs: it still
// finds the fault, the second keeps no DID map and checks seqs alone.
func TestRevCheckConsumers(t *testing.T) {
	path, _ := smallCapture(t, 1, 200)
	mr := newMiniRelay(t, 40, 120)
	cfg := quietConfig(path, 2)
	cfg.Relay = Relay{API: mr.api}
	cfg.RevCheckConsumers = 1
	rep, err := Run(context.Background(), cfg)
	if !errors.Is(err, ErrChecksFailed) {
		t.Fatalf("err %v", err)
	}
	first, second := rep.ConsumerResults[0], rep.ConsumerResults[1]
	if first.RevBackward != 1 || first.DIDs == 0 || first.Gaps != 1 {
		t.Errorf("rev-checking consumer %+v", first)
	}
	if second.RevBackward != 0 || second.DIDs != 0 || second.Gaps != 1 || second.Backward != 1 {
		t.Errorf("seq-only consumer %+v", second)
	}
}

// A run that cannot complete ends at the timeout and says so.
func TestIncomplete(t *testing.T) {
	path, _ := smallCapture(t, 1, 50)
	cfg := quietConfig(path, 1)
	cfg.Expected = 51
	cfg.Timeout = 300 * time.Millisecond
	h, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rep, err := h.Run(context.Background(), Relay{API: "http://" + h.Hostnames()[0], NoCrawl: true})
	if !errors.Is(err, ErrIncomplete) || errors.Is(err, ErrChecksFailed) || rep.Ended != "timeout" || rep.Complete {
		t.Fatalf("err %v ended %s complete %v", err, rep.Ended, rep.Complete)
	}
	if rep.ConsumerResults[0].Events != 50 {
		t.Errorf("events %d", rep.ConsumerResults[0].Events)
	}
}

// A Duration-bounded run is not failed for being incomplete.
func TestDurationBound(t *testing.T) {
	path, _ := smallCapture(t, 1, 50)
	cfg := quietConfig(path, 1)
	cfg.Expected = 1000
	cfg.Duration = 200 * time.Millisecond
	h, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rep, err := h.Run(context.Background(), Relay{API: "http://" + h.Hostnames()[0], NoCrawl: true})
	if err != nil || rep.Ended != "duration" || !rep.OK || rep.Complete {
		t.Fatalf("err %v ended %s ok %v complete %v", err, rep.Ended, rep.OK, rep.Complete)
	}
}

func TestSetupErrors(t *testing.T) {
	path, _ := smallCapture(t, 1, 10)
	if _, err := Prepare(context.Background(), Config{Capture: path, Consumers: -1}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("bad consumers: %v", err)
	}
	if _, err := Prepare(context.Background(), Config{}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("no capture: %v", err)
	}
	if _, err := Prepare(context.Background(), Config{Capture: path, LatencyWarmup: time.Second}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("warm-up at full speed: %v", err)
	}
	cfg := quietConfig(path, 1)
	cfg.ConnectTimeout = 200 * time.Millisecond
	h, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// A relay that accepts consumers but never subscribes to the host.
	mr := newMiniRelay(t, 0, 0)
	if _, err := h.Run(context.Background(), Relay{API: mr.api, NoCrawl: true}); !errors.Is(err, ErrHostNotConnected) {
		t.Errorf("no subscription: %v", err)
	}
	h2, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if _, err := h2.Run(context.Background(), Relay{API: "ftp://x"}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("bad scheme: %v", err)
	}
}
