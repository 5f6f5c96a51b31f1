package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/atrelay/relay/internal/testutil"
)

// asMain makes the test binary act as the relay binary when the harness
// starts it as a child (the same re-exec pattern as the store's crash test).
const asMain = "RELAY_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestToolsEndToEnd runs the tools together the way an operator does:
// `relay generate` writes a synthetic capture (signed offline), and `relay
// bench` replays it as its hosts with a fake PLC through a `relay serve`
// child with three consumers, which must each receive every event once, in
// order, with nothing dropped.
func TestToolsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	capPath := filepath.Join(dir, "small.cap")
	var out bytes.Buffer
	if err := runGenerate([]string{"--out", capPath, "--hosts", "6", "--accounts", "3", "--actions", "400", "--rate", "200"}, &out); err != nil {
		t.Fatalf("generate: %v\n%s", err, out.String())
	}
	api, adm := testutil.FreePort(t), testutil.FreePort(t)
	t.Setenv(asMain, "1")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	relayCmd := strings.Join([]string{self, "serve", "--allow-insecure-hosts", "--trusted-domains", "localhost:*",
		"--plc-host", "{plc}", "--data-dir", filepath.Join(dir, "data"), "--seed-hosts-url=", "--log-level", "warn",
		"--api-listen", "127.0.0.1:" + strconv.Itoa(api), "--admin-listen", "127.0.0.1:" + strconv.Itoa(adm)}, " ")
	report := filepath.Join(dir, "report.json")
	out.Reset()
	err = runBench([]string{"--capture", capPath, "--consumers", "3", "--speed", "max", "--timeout", "3m",
		"--relay-cmd", relayCmd, "--relay-log", filepath.Join(dir, "relay.log"),
		"--relay-api", "http://127.0.0.1:" + strconv.Itoa(api),
		"--relay-metrics", "http://127.0.0.1:" + strconv.Itoa(adm) + "/metrics",
		"--json", report, "--quiet"}, &out)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "relay.log"))
		t.Fatalf("bench: %v\n%s\nrelay log:\n%s", err, out.String(), log)
	}
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		OK             bool             `json:"ok"`
		ExpectedEvents int64            `json:"expectedEvents"`
		Drops          map[string]int64 `json:"drops"`
		Consumers      []struct {
			Events, Gaps, Backward, RevBackward int64
		} `json:"consumerResults"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	if !r.OK || len(r.Consumers) != 3 || r.ExpectedEvents == 0 {
		t.Fatalf("report: ok %v, %d consumers, %d expected\n%s", r.OK, len(r.Consumers), r.ExpectedEvents, out.String())
	}
	for i, c := range r.Consumers {
		if c.Events != r.ExpectedEvents || c.Gaps != 0 || c.Backward != 0 || c.RevBackward != 0 {
			t.Errorf("consumer %d: %+v, want %d events in order", i, c, r.ExpectedEvents)
		}
	}
	for name, n := range r.Drops {
		if n != 0 {
			t.Errorf("%s = %d, want 0", name, n)
		}
	}
}
