package admin

import (
	"errors"
	"strings"
	"testing"

	"github.com/atrelay/relay/store"
)

// cli runs RunCLI against e with the test token and returns its output.
func (e *env) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	full := append([]string{"--url", e.ts.URL, "--token", testToken}, args...)
	err := RunCLI(full, &out)
	return out.String(), err
}

func TestCLIActions(t *testing.T) {
	e := newEnv(t)
	h := e.mkHost(t, "pds.example.com")
	e.mkAccounts(t, h.ID, didA)
	e.eng.conns = []string{"pds.example.com"}
	cases := []struct {
		args []string
		call string
	}{
		{[]string{"ban-host", "pds.example.com"}, "ban-host pds.example.com"},
		{[]string{"unban-host", "pds.example.com"}, "unban-host pds.example.com"},
		{[]string{"ban-domain", "evil.example"}, "ban-domain evil.example"},
		{[]string{"unban-domain", "evil.example"}, "unban-domain evil.example"},
		{[]string{"set-limits", "--account-limit", "42", "--trusted=false", "pds.example.com"}, "limits pds.example.com accounts=42 trusted=false"},
		{[]string{"set-limits", "--per-second", "9", "pds.example.com"}, "limits pds.example.com per-second=9"},
		{[]string{"takedown", didA}, "takedown " + didA},
		{[]string{"restore", didA}, "restore " + didA},
		{[]string{"reset-cursor", "pds.example.com"}, "reset-cursor pds.example.com"},
		{[]string{"resync", didA}, "resync " + didA},
		{[]string{"crawl", "new.example.com"}, "crawl new.example.com"},
		{[]string{"kill-upstream", "--ban", "pds.example.com"}, "kill pds.example.com true"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			out, err := e.cli(t, c.args...)
			if err != nil || out != "ok\n" {
				t.Fatalf("output %q, err %v", out, err)
			}
			if got := e.eng.lastCall(); got != c.call {
				t.Fatalf("engine call %q, want %q", got, c.call)
			}
		})
	}
	if hh, _ := e.st.HostByName("pds.example.com"); hh.AccountLimit != 42 {
		t.Fatalf("set-limits not applied: %+v", hh)
	}
}

func TestCLIToggleCrawl(t *testing.T) {
	e := newEnv(t)
	steps := []struct {
		args []string
		out  string
		on   bool
	}{
		{[]string{"toggle-crawl"}, "public requestCrawl off\n", false},
		{[]string{"toggle-crawl"}, "public requestCrawl on\n", true},
		{[]string{"toggle-crawl", "on"}, "public requestCrawl on\n", true},
		{[]string{"toggle-crawl", "off"}, "public requestCrawl off\n", false},
	}
	for _, s := range steps {
		out, err := e.cli(t, s.args...)
		if err != nil || out != s.out || e.eng.CrawlEnabled() != s.on {
			t.Fatalf("%v: %q %v, enabled %v", s.args, out, err, e.eng.CrawlEnabled())
		}
	}
	if _, err := e.cli(t, "toggle-crawl", "sideways"); !errors.Is(err, ErrUsage) {
		t.Fatalf("bad toggle arg: %v", err)
	}
}

func TestCLILists(t *testing.T) {
	e := newEnv(t)
	h := e.mkHost(t, "a.example.com")
	e.mkHost(t, "b.example.com")
	e.mkAccounts(t, h.ID, didA, didB)
	if _, err := e.st.UpdateHost(h.ID, func(h *store.Host) { h.LastError = "line one\nline two" }); err != nil {
		t.Fatal(err)
	}
	e.eng.conns = []string{"a.example.com"}

	out, err := e.cli(t, "hosts")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") ||
		!strings.Contains(lines[1], "a.example.com") || !strings.Contains(lines[1], "true") ||
		!strings.Contains(lines[1], "line one line two") || !strings.Contains(lines[2], "b.example.com") {
		t.Fatalf("hosts output:\n%s", out)
	}
	out, err = e.cli(t, "hosts", "--limit", "1")
	if err != nil || !strings.Contains(out, "a.example.com") || strings.Contains(out, "b.example.com") ||
		!strings.HasSuffix(out, "next cursor: 1\n") {
		t.Fatalf("hosts --limit 1: %q %v", out, err)
	}
	out, err = e.cli(t, "hosts", "--limit", "1", "--all")
	if err != nil || !strings.Contains(out, "a.example.com") || !strings.Contains(out, "b.example.com") ||
		strings.Contains(out, "next cursor") {
		t.Fatalf("hosts --all: %q %v", out, err)
	}
	out, err = e.cli(t, "hosts", "--limit", "1", "--cursor", "1")
	if err != nil || strings.Contains(out, "a.example.com") || !strings.Contains(out, "b.example.com") {
		t.Fatalf("hosts --cursor: %q %v", out, err)
	}

	e.eng.consumers = []Consumer{{RemoteAddr: "192.0.2.7:4000", UserAgent: "jetstream", Position: 5, Mode: "replay"}}
	out, err = e.cli(t, "consumers")
	if err != nil || !strings.Contains(out, "192.0.2.7:4000") || !strings.Contains(out, "replay") {
		t.Fatalf("consumers: %q %v", out, err)
	}

	if _, err := e.cli(t, "ban-domain", "spam.example"); err != nil {
		t.Fatal(err)
	}
	out, err = e.cli(t, "domains")
	if err != nil || out != "spam.example\n" {
		t.Fatalf("domains: %q %v", out, err)
	}
	if _, err := e.cli(t, "takedown", didB); err != nil {
		t.Fatal(err)
	}
	out, err = e.cli(t, "takedowns")
	if err != nil || out != didB+"\n" {
		t.Fatalf("takedowns: %q %v", out, err)
	}
	out, err = e.cli(t, "takedowns", "--all", "--cursor", "1")
	if err != nil || out != didB+"\n" {
		t.Fatalf("takedowns --all --cursor 1: %q %v", out, err)
	}

	out, err = e.cli(t, "new-hosts-per-day")
	if err != nil || out != "new hosts per day: 50\n" {
		t.Fatalf("new-hosts-per-day: %q %v", out, err)
	}
	out, err = e.cli(t, "new-hosts-per-day", "7")
	if err != nil || out != "new hosts per day: 7\n" || e.eng.NewHostsPerDay() != 7 {
		t.Fatalf("new-hosts-per-day 7: %q %v", out, err)
	}
	if _, err := e.cli(t, "new-hosts-per-day", "-3"); !errors.Is(err, ErrUsage) {
		t.Fatalf("negative limit: %v", err)
	}
}

func TestCLIErrors(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"ban-host"},
		{"ban-host", "a", "b"},
		{"set-limits", "pds.example.com"},
		{"hosts", "--limit", "x"},
		{"--nope"},
	} {
		out, err := e.cli(t, args...)
		if !errors.Is(err, ErrUsage) || !strings.Contains(out, "usage: relay admin") {
			t.Errorf("%v: err %v, output %q", args, err, out)
		}
	}
	// API errors come back as *APIError.
	_, err := e.cli(t, "ban-host", "nope.example.com")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("unknown host: %v", err)
	}
	// Wrong token: 401.
	var out strings.Builder
	err = RunCLI([]string{"--url", e.ts.URL, "--token", "wrong", "hosts"}, &out)
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Name != "Unauthorized" {
		t.Fatalf("wrong token: %v", err)
	}
	// No token at all.
	t.Setenv("RELAY_ADMIN_PASSWORD", "")
	t.Setenv("RELAY_ADMIN_KEY", "")
	err = RunCLI([]string{"--url", e.ts.URL, "hosts"}, &out)
	if !errors.Is(err, ErrUsage) {
		t.Fatalf("no token: %v", err)
	}
	// Token from the environment (the first of a list, or the reference's
	// second variable), flags after the command.
	for _, env := range [][2]string{
		{"RELAY_ADMIN_PASSWORD", testToken + ",other"},
		{"RELAY_ADMIN_KEY", " " + testToken},
	} {
		t.Setenv("RELAY_ADMIN_PASSWORD", "")
		t.Setenv(env[0], env[1])
		out.Reset()
		if err := RunCLI([]string{"domains", "--url", e.ts.URL}, &out); err != nil {
			t.Fatalf("env token %s=%q: %v", env[0], env[1], err)
		}
	}
	// -h prints usage and succeeds.
	out.Reset()
	if err := RunCLI([]string{"-h"}, &out); err != nil || !strings.Contains(out.String(), "toggle-crawl") {
		t.Fatalf("-h: %v %q", err, out.String())
	}
}
