package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/memory"
)

// unitFile is a parsed systemd unit: section → key → values in file order
// (a key may repeat, e.g. Environment=).
type unitFile map[string]map[string][]string

var (
	sectionRE = regexp.MustCompile(`^\[([A-Za-z]+)\]$`)
	unitKeyRE = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)
	envLineRE = regexp.MustCompile(`^(RELAY_[A-Z0-9_]+)=(.*)$`)
	envNameRE = regexp.MustCompile(`RELAY_[A-Z0-9_]+`)
)

// parseUnit checks systemd's section/key syntax and returns the keys and
// every syntax problem found.
func parseUnit(b []byte) (unitFile, []string) {
	u := unitFile{}
	var problems []string
	section := ""
	for i, line := range strings.Split(string(b), "\n") {
		n := i + 1
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			problems = append(problems, fmt.Sprintf("relay.service:%d: line continuation; keep each setting on one line", n))
		}
		if m := sectionRE.FindStringSubmatch(line); m != nil {
			section = m[1]
			if _, dup := u[section]; dup {
				problems = append(problems, fmt.Sprintf("relay.service:%d: section [%s] repeated", n, section))
			}
			u[section] = map[string][]string{}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("relay.service:%d: %q is neither a section header nor Key=Value", n, line))
		case section == "":
			problems = append(problems, fmt.Sprintf("relay.service:%d: %q before the first section", n, line))
		case !unitKeyRE.MatchString(key):
			problems = append(problems, fmt.Sprintf("relay.service:%d: malformed key %q", n, key))
		default:
			u[section][key] = append(u[section][key], value)
		}
	}
	return u, problems
}

// mustParseUnit parses the unit, failing t on any syntax problem.
func mustParseUnit(t *testing.T, b []byte) unitFile {
	t.Helper()
	u, problems := parseUnit(b)
	for _, p := range problems {
		t.Error(p)
	}
	return u
}

// get returns the single value of section.key, failing when absent or repeated.
func (u unitFile) get(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Errorf("relay.service: [%s] %s set %d times, want once", section, key, len(v))
		return ""
	}
	return v[0]
}

// envEntry is one setting of relay.env.
type envEntry struct {
	name, value string
	line        int
}

// parseEnv checks relay.env's syntax: comments, blank lines and RELAY_*=value
// lines, each preceded by a comment, no name twice.
func parseEnv(t *testing.T, b []byte) []envEntry {
	t.Helper()
	var out []envEntry
	seen := map[string]bool{}
	prevComment := false
	for i, line := range strings.Split(string(b), "\n") {
		n := i + 1
		switch {
		case line == "":
			prevComment = false
		case strings.HasPrefix(line, "#"):
			prevComment = true
		default:
			m := envLineRE.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("relay.env:%d: %q is not RELAY_NAME=value", n, line)
				continue
			}
			if !prevComment {
				t.Errorf("relay.env:%d: %s has no comment above it", n, m[1])
			}
			if seen[m[1]] {
				t.Errorf("relay.env:%d: %s set twice", n, m[1])
			}
			seen[m[1]] = true
			out = append(out, envEntry{name: m[1], value: m[2], line: n})
			prevComment = false
		}
	}
	return out
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUnitFile(t *testing.T) {
	u := mustParseUnit(t, readFile(t, "relay.service"))
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Fatalf("relay.service: no [%s] section", s)
		}
	}
	f := func(section, key, want string) {
		t.Helper()
		if got := u.get(t, section, key); got != want {
			t.Errorf("relay.service: [%s] %s=%q, want %q", section, key, got, want)
		}
	}
	f("Service", "User", "relay")
	f("Service", "DynamicUser", "no")
	f("Service", "StateDirectory", "relay")
	f("Service", "WorkingDirectory", "/var/lib/relay")
	f("Service", "EnvironmentFile", "/etc/relay/relay.env")
	f("Service", "ExecStart", "/usr/local/bin/relay serve")
	f("Service", "LimitNOFILE", "1048576")
	f("Service", "Restart", "always")
	f("Service", "NoNewPrivileges", "yes")
	f("Service", "ProtectSystem", "strict")
	f("Service", "ProtectHome", "yes")
	f("Service", "PrivateTmp", "yes")
	f("Service", "PrivateDevices", "yes")
	f("Service", "ProtectKernelTunables", "yes")
	f("Service", "ProtectKernelModules", "yes")
	f("Service", "ProtectControlGroups", "yes")
	f("Service", "RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX")
	f("Service", "LockPersonality", "yes")
	f("Service", "RestrictRealtime", "yes")
	f("Service", "SystemCallArchitectures", "native")
	f("Service", "SystemCallFilter", "@system-service")
	f("Service", "ProtectProc", "invisible")
	f("Service", "ProcSubset", "pid")
	f("Service", "ReadWritePaths", "/var/lib/relay")
	f("Install", "WantedBy", "multi-user.target")

	if d, err := time.ParseDuration(u.get(t, "Service", "RestartSec")); err != nil || d <= 0 {
		t.Errorf("relay.service: RestartSec not a positive duration: %v", err)
	}
	// Pebble's close flushes memtables; a minute is the least we allow it.
	if d, err := time.ParseDuration(u.get(t, "Service", "TimeoutStopSec")); err != nil || d < time.Minute {
		t.Errorf("relay.service: TimeoutStopSec %v (%v), want at least 1m", d, err)
	}
}

// TestEnvFile checks relay.env's syntax and its must-match note. The file
// is generated from the settings table (`relay serve --print-env`); the
// values and help texts are checked against that table by
// TestRelayEnvMatchesTable in cmd/relay, which can import it.
func TestEnvFile(t *testing.T) {
	entries := parseEnv(t, readFile(t, "relay.env"))
	if len(entries) == 0 {
		t.Fatal("relay.env sets nothing")
	}
	text := string(readFile(t, "relay.env"))
	// Documented must-match rule, stated where operators edit the values.
	if !strings.Contains(text, "MUST MATCH relay.service") {
		t.Error("relay.env: no comment saying which settings must match the unit")
	}
	if !strings.Contains(text, "relay serve --print-env") {
		t.Error("relay.env: no comment saying how it is generated")
	}
}

// TestEnvNamesDocumented checks the deploy docs (doc.go and any Markdown
// file in this folder) name no RELAY_* setting that relay.env lacks: a
// renamed or removed setting must not linger in them. The docs need not
// list every setting: relay.env and `relay serve -h` do.
func TestEnvNamesDocumented(t *testing.T) {
	entries := parseEnv(t, readFile(t, "relay.env"))
	docFiles := []string{"doc.go"}
	md, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	docFiles = append(docFiles, md...)
	t.Logf("deploy docs checked: %v", docFiles)
	inEnv := map[string]bool{}
	for _, e := range entries {
		inEnv[e.name] = true
	}
	for _, file := range docFiles {
		for _, name := range envNameRE.FindAllString(string(readFile(t, file)), -1) {
			if !inEnv[name] {
				t.Errorf("%s names %s, which relay.env does not set", file, name)
			}
		}
	}
}

// TestMemoryMatchesUnit checks the rule written in both files: the budget
// equals MemoryHigh, MemoryMax sits above it, and explicit cache sizes fit.
func TestMemoryMatchesUnit(t *testing.T) {
	u := mustParseUnit(t, readFile(t, "relay.service"))
	env := map[string]string{}
	for _, e := range parseEnv(t, readFile(t, "relay.env")) {
		env[e.name] = e.value
	}
	size := func(what, v string) int64 {
		t.Helper()
		n, err := memory.ParseBytes(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: %v", what, v, err)
		}
		return n
	}
	budget := size("RELAY_MEMORY_BUDGET", env["RELAY_MEMORY_BUDGET"])
	high := size("MemoryHigh", u.get(t, "Service", "MemoryHigh"))
	hard := size("MemoryMax", u.get(t, "Service", "MemoryMax"))
	// Explicit sizes (0 means a share of the budget) must leave the heap room.
	var explicit int64
	for _, name := range []string{"RELAY_IDENTITY_CACHE_BUDGET", "RELAY_FIREHOSE_BUFFER", "RELAY_PEBBLE_CACHE"} {
		n, err := memory.ParseBytes(env[name])
		if err != nil || n < 0 {
			t.Fatalf("%s=%q: %v", name, env[name], err)
		}
		explicit += n
	}
	if budget != high {
		t.Errorf("RELAY_MEMORY_BUDGET %d != MemoryHigh %d", budget, high)
	}
	if hard <= high || hard > high+high/4 {
		t.Errorf("MemoryMax %d should be a little above MemoryHigh %d", hard, high)
	}
	if explicit > budget/2 {
		t.Errorf("explicit cache and buffer sizes %d are more than half the memory budget %d", explicit, budget)
	}
	if env["RELAY_DATA_DIR"] != u.get(t, "Service", "WorkingDirectory") {
		t.Errorf("RELAY_DATA_DIR %q is not the unit's WorkingDirectory", env["RELAY_DATA_DIR"])
	}
}

// TestSystemdAnalyzeVerify runs `systemd-analyze verify` when the tool is
// installed, on a copy of the unit whose ExecStart points at a stand-in
// executable (verify rejects a missing binary, and CI has none installed).
// Without the tool, the structural checks above are the only ones; the log
// says which ran.
func TestSystemdAnalyzeVerify(t *testing.T) {
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("systemd-analyze not installed: only the structural unit checks ran (%v)", err)
		return
	}
	dir := t.TempDir()
	stand := filepath.Join(dir, "relay")
	if err := os.WriteFile(stand, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit := bytes.ReplaceAll(readFile(t, "relay.service"), []byte("/usr/local/bin/relay"), []byte(stand))
	unitPath := filepath.Join(dir, "relay.service")
	if err := os.WriteFile(unitPath, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	// The deadline only stops a hung tool from hanging the suite.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, "verify", unitPath).CombinedOutput()
	t.Logf("ran %s verify: err=%v output=%q", tool, err, out)
	if err != nil {
		t.Fatalf("systemd-analyze verify failed: %v\n%s", err, out)
	}
	// verify exits 0 on unknown keys and bad values, warning on stderr with
	// the file name; any such line about our unit is a failure.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "relay.service") {
			t.Errorf("systemd-analyze: %s", line)
		}
	}
}

func TestInstallScript(t *testing.T) {
	script := readFile(t, "install.sh")
	for _, want := range []string{"#!/usr/bin/env bash\n", "set -euo pipefail\n", "useradd --system", "systemctl daemon-reload", "systemctl enable relay.service"} {
		if !bytes.Contains(script, []byte(want)) {
			t.Errorf("install.sh lacks %q", want)
		}
	}
	// The env file (it holds the admin token) is installed only when
	// absent, readable by root alone; an existing one is tightened.
	if !regexp.MustCompile(`if \[\[ ! -e /etc/relay/relay.env \]\]; then\n\s+install -m 0600 -o root -g root `).Match(script) {
		t.Error("install.sh must copy relay.env only when /etc/relay/relay.env is absent, mode 0600 root:root")
	}
	if !regexp.MustCompile(`else\n\s+chown root:root /etc/relay/relay.env\n\s+chmod 0600 /etc/relay/relay.env\n`).Match(script) {
		t.Error("install.sh must make an existing /etc/relay/relay.env 0600 root:root")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash not found, cannot syntax-check install.sh: %v", err)
	}
	out, err := exec.Command(bash, "-n", "install.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("bash -n install.sh: %v\n%s", err, out)
	}
	t.Logf("ran %s -n install.sh: ok", bash)
}

// TestParseUnitRejectsBrokenSyntax shows the structural check fails when it
// should.
func TestParseUnitRejectsBrokenSyntax(t *testing.T) {
	f := func(name, unit string) {
		t.Helper()
		if _, problems := parseUnit([]byte(unit)); len(problems) == 0 {
			t.Errorf("%s: accepted %q", name, unit)
		}
	}
	f("key before section", "Key=value\n[Service]\n")
	f("no equals sign", "[Service]\nnot a setting\n")
	f("lower-case key", "[Service]\nlower=case\n")
	f("repeated section", "[Service]\n[Service]\n")
	f("continuation", "[Service]\nExecStart=/bin/x \\\n")
	if _, problems := parseUnit([]byte("# c\n[Service]\nUser=relay\n")); len(problems) != 0 {
		t.Errorf("rejected a valid unit: %v", problems)
	}
}
