package main

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/atrelay/relay/engine/memory"
)

// ledgerItems are the components that hold memory a remote party or the
// workload decides: each must be handed a share and put its configured
// bound in the ledger. A new one belongs here and in memory.Shares.
var ledgerItems = []string{
	"pebble block cache", "pebble memtables", "identity cache", "firehose ring", "firehose consumers",
	"resync", "upstream buffers", "intake", "results", "held results past their bound", "jetstream subscribers",
	"subscribed hosts", "account overlay",
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
		if err := l.Check(); err != nil {
			t.Errorf("budget %s: %v", budget, err)
		}
		have := map[string]int64{}
		for _, it := range l.Items {
			have[it.Name] = it.Bytes
		}
		for _, name := range ledgerItems {
			if b, ok := have[name]; !ok || b <= 0 {
				t.Errorf("budget %s: no bound for %s in the ledger (%s)", budget, name, l)
			}
		}
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
