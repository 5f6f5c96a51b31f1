package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/verify"
	"github.com/atrelay/relay/store"
)

// TestReferenceAliases: the reference relay's variable names set our
// settings, with its semantics where they differ, and our own name wins
// with a warning when both are set and disagree.
func TestReferenceAliases(t *testing.T) {
	s := mustParse(t, nil, envOf(map[string]string{
		"RELAY_API_BIND":                "127.0.0.1:9999",
		"ATP_PLC_HOST":                  "https://plc.example",
		"RELAY_NEW_HOSTS_PER_DAY_LIMIT": "7",
		"RELAY_DEFAULT_REPO_LIMIT":      "42",
		"RELAY_LENIENT_SYNC_VALIDATION": "true",
		"RELAY_IDENT_CACHE_SIZE":        "1000",
		"RELAY_ADMIN_KEY":               "a,b",
		"LOG_LEVEL":                     "DEBUG",
		"RELAY_DISABLE_REQUEST_CRAWL":   "true",
		"RELAY_INITIAL_SEQ_NUMBER":      "5000",
	}))
	if s.APIListen != "127.0.0.1:9999" || s.Identity.PLCURL != "https://plc.example" || s.Relay.NewHostsPerDay != 7 ||
		s.Relay.DefaultAccountLimit != 42 || s.Relay.Validation != verify.Lenient || s.Sizes.identity != 1000*identCacheEntryBytes ||
		s.AdminToken != "a,b" || s.LogLevel != slog.LevelDebug || !s.Relay.DisablePublicCrawl || s.Store.InitialSeq != 5000 {
		t.Errorf("aliases not applied: %+v", s)
	}
	if len(s.Warnings) != 0 {
		t.Errorf("warnings without a conflict: %q", s.Warnings)
	}

	s = mustParse(t, nil, envOf(map[string]string{
		"RELAY_NEW_HOSTS_PER_DAY": "9", "RELAY_NEW_HOSTS_PER_DAY_LIMIT": "7",
		"RELAY_PLC_HOST": "https://a.example", "ATP_PLC_HOST": "https://a.example",
		"DATABASE_URL": "sqlite://x",
	}))
	if s.Relay.NewHostsPerDay != 9 {
		t.Errorf("our name must win: %d", s.Relay.NewHostsPerDay)
	}
	if len(s.Warnings) != 2 || !strings.Contains(s.Warnings[0], "DATABASE_URL") ||
		!strings.Contains(s.Warnings[1], "RELAY_NEW_HOSTS_PER_DAY_LIMIT") {
		t.Errorf("want a warning for the disagreeing alias and the ignored reference setting, got %q", s.Warnings)
	}

	_, _, err := parseSettings(nil, envOf(map[string]string{"RELAY_LENIENT_SYNC_VALIDATION": "maybe"}), nil)
	if err == nil || !strings.Contains(err.Error(), "RELAY_LENIENT_SYNC_VALIDATION") {
		t.Errorf("a malformed alias must be an error naming it: %v", err)
	}
}

// TestDotenv: a .env file fills what the environment leaves unset.
func TestDotenv(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".env")
	body := "# comment\nexport RELAY_LOG_LEVEL=warn\nRELAY_PLC_HOST=\"https://plc.example\"\nRELAY_DATA_DIR=/x # trailing\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	dot, err := readDotenv(path)
	if err != nil {
		t.Fatal(err)
	}
	env := withDotenv(envOf(map[string]string{"RELAY_LOG_LEVEL": "error"}), dot)
	s := mustParse(t, nil, env)
	if s.LogLevel != slog.LevelError || s.Identity.PLCURL != "https://plc.example" || s.DataDir != "/x" {
		t.Errorf("dotenv: level %v plc %q dir %q", s.LogLevel, s.Identity.PLCURL, s.DataDir)
	}
	if dot, err := readDotenv(filepath.Join(t.TempDir(), "absent")); err != nil || dot != nil {
		t.Errorf("a missing .env: %v %v", dot, err)
	}
	if err := os.WriteFile(path, []byte("not a setting\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readDotenv(path); err == nil {
		t.Error("a malformed .env line must be an error")
	}
}

// TestServeCompat: the public listener answers like the reference relay
// (banner, /_health, the Server header, the admin API when asked), and
// RELAY_INITIAL_SEQ moves an existing database's next seq forward.
func TestServeCompat(t *testing.T) {
	keepRuntimeSettings(t)
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{BlockCacheBytes: 8 << 20, MemTableBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	a, err := buildApp(testSettings(t, dir, "--admin-on-api", "--initial-seq", "1000"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := a.store.NewestSeq(); got != 999 {
		t.Errorf("newest seq %d after RELAY_INITIAL_SEQ=1000 on an existing database, want 999", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Error("run did not return")
		}
	}()
	api := "http://" + a.servers[0].ln.Addr().String()
	for _, c := range []struct {
		path, token string
		want        int
	}{{"/", "", 200}, {"/_health", "", 200}, {"/xrpc/_health", "", 200}, {"/admin/subs/getEnabled", "", 401},
		{"/admin/subs/getEnabled", "sesame", 200}} {
		req, _ := http.NewRequest(http.MethodGet, api+c.path, nil)
		if c.token != "" {
			req.SetBasicAuth("admin", c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want || resp.Header.Get("Server") != "relay (atproto-relay)" {
			t.Errorf("GET %s: %d, Server %q; want %d and our Server header", c.path, resp.StatusCode, resp.Header.Get("Server"), c.want)
		}
	}
}
