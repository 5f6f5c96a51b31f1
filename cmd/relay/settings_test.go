package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/atrelay/relay/engine/memory"
	"github.com/atrelay/relay/engine/relay"
	"github.com/atrelay/relay/engine/verify"
	"github.com/atrelay/relay/store"
)

// envFilePath is the committed environment file, relative to this package.
var envFilePath = filepath.Join("..", "..", "deploy", "relay.env")

const regenerate = "go run ./cmd/relay serve --print-env > deploy/relay.env"

// noEnv is a hermetic environment: nothing set.
func noEnv(string) (string, bool) { return "", false }

// envOf is an environment holding exactly m.
func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func mustParse(t *testing.T, args []string, env func(string) (string, bool)) *Settings {
	t.Helper()
	s, _, err := parseSettings(args, env, io.Discard)
	if err != nil {
		t.Fatalf("parseSettings(%q): %v", args, err)
	}
	return s
}

// lineDiff describes how got differs from want line by line ("" when
// equal): each differing line number with both versions.
func lineDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  committed: %q\n  table:     %q\n", i+1, wl, gl)
		}
	}
	return b.String()
}

// TestRelayEnvMatchesTable renders deploy/relay.env from the settings table
// and compares it with the committed file, so a default, a help text or a
// setting cannot change in one place only.
func TestRelayEnvMatchesTable(t *testing.T) {
	var got bytes.Buffer
	if err := writeEnvFile(&got, settingsTable(&Settings{})); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(envFilePath)
	if err != nil {
		t.Fatal(err)
	}
	if d := lineDiff(want, got.Bytes()); d != "" {
		t.Errorf("deploy/relay.env differs from the settings table; regenerate it from the repository root with\n\t%s\n%s", regenerate, d)
	}
	// The rendered file is what systemd reads: every variable the table
	// defines appears once, with the table's value, and parses back.
	vals := map[string]string{}
	for _, line := range strings.Split(got.String(), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			if _, dup := vals[k]; dup {
				t.Errorf("%s rendered twice", k)
			}
			vals[k] = v
		}
	}
	table := settingsTable(&Settings{})
	if len(vals) != len(table) {
		t.Errorf("rendered %d variables, the table has %d", len(vals), len(table))
	}
	if _, _, err := parseSettings(nil, envOf(vals), io.Discard); err != nil {
		t.Errorf("the rendered file does not parse: %v", err)
	}
}

// TestEnvDiffReportsChange shows the comparison above fails on a change:
// one default edited in the table gives a diff naming that line.
func TestEnvDiffReportsChange(t *testing.T) {
	var a, b bytes.Buffer
	table := settingsTable(&Settings{})
	if err := writeEnvFile(&a, table); err != nil {
		t.Fatal(err)
	}
	for i := range table {
		if table[i].env == "RELAY_NEW_HOSTS_PER_DAY" {
			table[i].def = "51"
		}
	}
	if err := writeEnvFile(&b, table); err != nil {
		t.Fatal(err)
	}
	d := lineDiff(a.Bytes(), b.Bytes())
	if !strings.Contains(d, `"RELAY_NEW_HOSTS_PER_DAY=51"`) || strings.Count(d, "line ") != 1 {
		t.Errorf("diff of one changed default:\n%s", d)
	}
	if lineDiff(a.Bytes(), a.Bytes()) != "" {
		t.Error("diff of equal files is not empty")
	}
}

// TestSettingsTable checks the table's own invariants: unique names, help
// on every entry, and defaults that parse.
func TestSettingsTable(t *testing.T) {
	flagRE, envRE := regexp.MustCompile(`^[a-z][a-z0-9-]*$`), regexp.MustCompile(`^RELAY_[A-Z0-9_]+$`)
	flags, envs := map[string]bool{}, map[string]bool{}
	for _, e := range settingsTable(&Settings{}) {
		if !flagRE.MatchString(e.flag) || !envRE.MatchString(e.env) {
			t.Errorf("%s / %s: malformed names", e.flag, e.env)
		}
		if flags[e.flag] || envs[e.env] {
			t.Errorf("%s / %s: defined twice", e.flag, e.env)
		}
		flags[e.flag], envs[e.env] = true, true
		if e.help == "" || e.group == "" || e.value.set == nil {
			t.Errorf("%s: help, group or value missing", e.flag)
		}
		if err := e.value.set(e.def); err != nil {
			t.Errorf("%s: default %q does not parse: %v", e.flag, e.def, err)
		}
		if err := e.value.set(e.deploy); e.deploy != "" && err != nil {
			t.Errorf("%s: deploy value %q does not parse: %v", e.flag, e.deploy, err)
		}
	}
}

// TestSettingsDefaults checks the built-in defaults land where the engine
// expects them, with nothing in the environment.
func TestSettingsDefaults(t *testing.T) {
	s := mustParse(t, nil, noEnv)
	check := func(name string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("APIListen", s.APIListen, ":2470")
	check("AdminListen", s.AdminListen, "127.0.0.1:2471")
	check("DataDir", s.DataDir, "./data")
	check("Store.ReplayWindow", s.Store.ReplayWindow, store.DefaultReplayWindow)
	check("Store.SyncInterval", s.Store.SyncInterval, store.DefaultSyncInterval)
	check("Store.Sync", s.Store.Sync, store.SyncEveryBatch)
	check("Store.InitialSeq", s.Store.InitialSeq, 1)
	check("Relay.DefaultAccountLimit", s.Relay.DefaultAccountLimit, relay.DefaultAccountLimit)
	check("Relay.NewHostsPerDay", s.Relay.NewHostsPerDay, relay.DefaultNewHostsPerDay)
	check("Relay.EventsPerSecond", s.Relay.EventsPerSecond, relay.DefaultEventsPerSecond)
	check("Relay.TrustedEventsPerSecond", s.Relay.TrustedEventsPerSecond, relay.DefaultTrustedEventsPerSecond)
	check("Relay.TrustedDomains", s.Relay.TrustedDomains, []string{"*.host.bsky.network"})
	check("Relay.SeedHostsURL", s.Relay.SeedHostsURL, "https://bsky.network")
	check("Relay.Validation", s.Relay.Validation, verify.Strict)
	check("Memory.GOGC", s.Memory.GOGC, memory.DefaultGOGC)
	check("Memory.TrimInterval", s.Memory.TrimInterval, memory.DefaultTrimInterval)
	check("Trim", s.Trim, true)
	check("LogLevel", s.LogLevel, slog.LevelInfo)
	check("LogFormat", s.LogFormat, "json")
}

// TestSettingsPrecedence: a variable wins over the default, a flag over the
// variable, and unset (absent, empty variable, empty flag) means default.
func TestSettingsPrecedence(t *testing.T) {
	env := envOf(map[string]string{"RELAY_WORKERS": "3", "RELAY_LOG_FORMAT": "text", "RELAY_API_LISTEN": "",
		"RELAY_MEMORY_BUDGET": "1GiB", "RELAY_TRUSTED_DOMAINS": "a.example, ,*.b.example"})
	s := mustParse(t, []string{"--workers", "5", "--plc-host=", "--allow-insecure-hosts"}, env)
	if s.Relay.Workers != 5 {
		t.Errorf("workers %d, want the flag's 5", s.Relay.Workers)
	}
	if s.LogFormat != "text" || s.Memory.Budget != 1<<30 {
		t.Errorf("log format %q, budget %d: want the variables' text and 1GiB", s.LogFormat, s.Memory.Budget)
	}
	if s.APIListen != ":2470" || s.Identity.PLCURL != "https://plc.directory" {
		t.Errorf("api %q, plc %q: an empty variable or flag must mean the default", s.APIListen, s.Identity.PLCURL)
	}
	if !s.AllowInsecureHosts {
		t.Error("a bare bool flag must mean true")
	}
	if fmt.Sprint(s.Relay.TrustedDomains) != "[a.example *.b.example]" {
		t.Errorf("trusted domains %q", s.Relay.TrustedDomains)
	}
}

// TestSeedHostsURLEmptyTurnsBootstrapOff is issue #12's point 11: a
// RELAY_SEED_HOSTS_URL set to "" (as `RELAY_SEED_HOSTS_URL=` in the env
// file) turns bootstrapping off instead of falling back to the default.
func TestSeedHostsURLEmptyTurnsBootstrapOff(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"absent", nil, nil, "https://bsky.network"},
		{"empty variable", map[string]string{"RELAY_SEED_HOSTS_URL": ""}, nil, ""},
		{"empty flag", map[string]string{"RELAY_SEED_HOSTS_URL": "https://x.example"}, []string{"--seed-hosts-url="}, ""},
		{"variable", map[string]string{"RELAY_SEED_HOSTS_URL": "https://x.example"}, nil, "https://x.example"},
	} {
		if got := mustParse(t, c.args, envOf(c.env)).Relay.SeedHostsURL; got != c.want {
			t.Errorf("%s: SeedHostsURL %q, want %q", c.name, got, c.want)
		}
	}
}

// TestSettingsParseErrors feeds each enum and size setting (and one of each
// other kind) a bad value, through its variable and through its flag: the
// error must name the setting and say what is wanted.
func TestSettingsParseErrors(t *testing.T) {
	for _, c := range []struct {
		flag, env, bad, want string
	}{
		{"sync-policy", "RELAY_SYNC_POLICY", "always", "want every-batch or none"},
		{"validation", "RELAY_VALIDATION", "loose", "want strict or lenient"},
		{"log-level", "RELAY_LOG_LEVEL", "verbose", "want debug, info, warn or error"},
		{"log-format", "RELAY_LOG_FORMAT", "xml", "want json or text"},
		{"memory-budget", "RELAY_MEMORY_BUDGET", "4 gigs", "want a byte size"},
		{"disk-budget", "RELAY_DISK_BUDGET", "-1", "want a byte size"},
		{"identity-cache-budget", "RELAY_IDENTITY_CACHE_BUDGET", "1XB", "want a byte size such as 512MiB or 4GiB: unknown unit"},
		{"firehose-buffer", "RELAY_FIREHOSE_BUFFER", "lots", "want a byte size"},
		{"pebble-cache", "RELAY_PEBBLE_CACHE", "1.5.5GiB", "want a byte size"},
		{"pebble-memtable", "RELAY_PEBBLE_MEMTABLE", "99999999999TiB", "want a byte size such as 512MiB or 4GiB: too large"},
		{"workers", "RELAY_WORKERS", "-1", "want an integer of at least 0"},
		{"initial-seq", "RELAY_INITIAL_SEQ", "0", "want an integer of at least 1"},
		{"replay-window", "RELAY_REPLAY_WINDOW", "3days", "want a duration"},
		{"events-per-second", "RELAY_EVENTS_PER_SECOND", "fast", "want a number"},
		{"trim", "RELAY_TRIM", "off", "want true or false"},
	} {
		_, _, err := parseSettings(nil, envOf(map[string]string{c.env: c.bad}), io.Discard)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%s=%q", c.env, c.bad)) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s=%q: err %v, want it to name the variable and say %q", c.env, c.bad, err, c.want)
		}
		_, _, err = parseSettings([]string{"--" + c.flag + "=" + c.bad}, noEnv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "-"+c.flag) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--%s=%q: err %v, want it to name the flag and say %q", c.flag, c.bad, err, c.want)
		}
	}
	// Every malformed variable is reported at once.
	_, _, err := parseSettings(nil, envOf(map[string]string{"RELAY_SYNC_POLICY": "x", "RELAY_PEBBLE_CACHE": "y"}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "RELAY_SYNC_POLICY") || !strings.Contains(err.Error(), "RELAY_PEBBLE_CACHE") {
		t.Errorf("two bad variables: %v", err)
	}
	if _, _, err := parseSettings([]string{"stray"}, noEnv, io.Discard); err == nil {
		t.Error("a stray argument was accepted")
	}
}

// TestServeHelp checks -h lists every setting with its variable and default.
func TestServeHelp(t *testing.T) {
	var out bytes.Buffer
	_, _, err := parseSettings([]string{"-h"}, noEnv, &out)
	if err != flag.ErrHelp {
		t.Fatalf("-h: %v", err)
	}
	for _, e := range settingsTable(&Settings{}) {
		if !strings.Contains(out.String(), "--"+e.flag+" ") && !strings.Contains(out.String(), "--"+e.flag+"[") {
			t.Errorf("-h lacks --%s", e.flag)
		}
		if !strings.Contains(out.String(), e.env+", default "+fmt.Sprintf("%q", e.def)) {
			t.Errorf("-h lacks %s with its default %q", e.env, e.def)
		}
	}
}
