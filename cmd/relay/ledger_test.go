package main

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/engine/jetstream"
	"github.com/atrelay/relay/engine/memory"
)

// ledgerItems are the components that hold memory a remote party or the
// workload decides: each must be handed a share and put its configured
// bound in the ledger. A new one belongs here and in memory.Shares.
var ledgerItems = []string{
	"pebble block cache", "pebble memtables", "identity cache", "firehose ring", "firehose consumers",
	"resync", "upstream buffers", "intake", "results", "held results past their bound", "jetstream subscribers",
	"subscribed hosts", "account overlay", "http connections", "list requests",
}

// buildLedger builds the app at budget (with extra settings) and returns
// its ledger, closing the app.
func buildLedger(t *testing.T, budget string, extra ...string) *memory.Ledger {
	t.Helper()
	keepRuntimeSettings(t)
	args := append([]string{"--memory-budget", budget}, extra...)
	a, err := buildApp(testSettings(t, t.TempDir(), args...), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("budget %s: %v", budget, err)
	}
	l := a.ledger
	if err := a.close(); err != nil {
		t.Fatal(err)
	}
	return l
}

// buildSplitterLedger is buildLedger for `relay splitter`.
func buildSplitterLedger(t *testing.T, budget string) *memory.Ledger {
	t.Helper()
	keepRuntimeSettings(t)
	s, _, err := parseSplitterSettings([]string{"--upstream", "ws://127.0.0.1:1", "--data-dir", t.TempDir(),
		"--api-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--memory-budget", budget, "--trim=false"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := buildSplitterApp(s, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("budget %s: %v", budget, err)
	}
	l := a.ledger
	a.close()
	return l
}

// checkLedger checks that l fits its budget and holds a bound for each of
// items, and returns its lines by name.
func checkLedger(t *testing.T, budget string, l *memory.Ledger, items []string) map[string]int64 {
	t.Helper()
	if err := l.Check(); err != nil {
		t.Errorf("budget %s: %v", budget, err)
	}
	have := map[string]int64{}
	for _, it := range l.Items {
		have[it.Name] = it.Bytes
	}
	for _, name := range items {
		if b, ok := have[name]; !ok || b <= 0 {
			t.Errorf("budget %s: no bound for %s in the ledger (%s)", budget, name, l)
		}
	}
	return have
}

// splitterLedgerItems are ledgerItems for `relay splitter`: the firehose
// and Jetstream, the queue in front of the store, and Pebble.
var splitterLedgerItems = []string{
	"pebble block cache", "pebble memtables", "firehose ring", "firehose consumers", "jetstream subscribers", "intake",
	"http connections", "sync pass-through",
}

// TestSplitterMemoryLedger is TestServeMemoryLedger for `relay splitter`:
// its consumers were capped at the firehose's and Jetstream's defaults
// (10,000 consumers of 96 KiB, 5,000 subscribers of 9 MiB) whatever the
// budget, so a few hundred clients could take a 1 GiB splitter past it.
// Now they get the shares of what only the relay has
// (memory.Shares.ForSplitter), and at 1 GiB many more consumers than the
// relay's cap, which a fan-out tier is for.
func TestSplitterMemoryLedger(t *testing.T) {
	for _, budget := range []string{fmt.Sprintf("%dB", memory.MinBudget), "96MiB", "256MiB", "1GiB", "4GiB", "24GiB"} {
		l := buildSplitterLedger(t, budget)
		have := checkLedger(t, budget, l, splitterLedgerItems)
		for _, name := range []string{"subscribed hosts", "identity cache", "results", "resync"} {
			if _, ok := have[name]; ok {
				t.Errorf("budget %s: the splitter's ledger lists %s, which it does not have (%s)", budget, name, l)
			}
		}
		if budget == "1GiB" {
			// The caps, from their ledger lines. The relay at 1 GiB admits
			// 170 consumers and 22 Jetstream subscribers.
			js := jetstreamWithin(jetstream.Config{}, memory.SharesOf(1<<30).ForSplitter().Jetstream, splitterJetstreamTarget)
			n := have["firehose consumers"] / (firehose.Config{}).ConsumerBytes()
			m := (have["jetstream subscribers"] - js.SharedBytes()) / js.SubscriberBytes()
			if n < 1500 || m < 300 {
				t.Errorf("1 GiB splitter admits %d firehose consumers and %d Jetstream subscribers, want the relay-only shares spent on them", n, m)
			}
			t.Logf("1 GiB: %d firehose consumers, %d Jetstream subscribers", n, m)
		}
		t.Logf("%s: %s", budget, l)
	}
}

// TestServeMemoryLedger builds the relay at budgets from the smallest
// accepted to 24 GiB and checks the ledger: every component's configured
// bound (connection caps times what one connection can hold, queue and
// cache sizes) plus the process overhead, fixed Go memory and GC headroom
// add up to at most the budget, and every component is in it. A component
// whose bound is left at its default instead of its share (10,000 firehose
// consumers, 8 MiB Jetstream queues, a 1 GiB upstream buffer bound), a
// share raised past what the budget holds, or a component that stops
// declaring its bound fails here.
func TestServeMemoryLedger(t *testing.T) {
	for _, budget := range []string{fmt.Sprintf("%dB", memory.MinBudget), "96MiB", "128MiB", "256MiB", "1GiB", "4GiB", "24GiB"} {
		l := buildLedger(t, budget)
		checkLedger(t, budget, l, ledgerItems)
		t.Logf("%s: %s", budget, l)
	}
}

// TestServeMemoryLedgerSeesOverrides: an explicit size past the budget
// shows in the ledger, which then no longer fits (the relay warns).
func TestServeMemoryLedgerSeesOverrides(t *testing.T) {
	l := buildLedger(t, "128MiB", "--firehose-buffer", "128MiB")
	if err := l.Check(); err == nil {
		t.Fatalf("a 128 MiB ring in a 128 MiB budget fits the ledger: %s", l)
	}
}
