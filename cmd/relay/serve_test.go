package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/relay/internal/testutil"
	"github.com/atrelay/relay/store"
	"github.com/gobwas/ws"
)

// keepRuntimeSettings restores the GC settings buildApp changes
// process-wide (memory.Apply), so later tests run as before.
func keepRuntimeSettings(t *testing.T) {
	limit, gc := debug.SetMemoryLimit(-1), debug.SetGCPercent(-1)
	debug.SetGCPercent(gc)
	t.Cleanup(func() {
		debug.SetMemoryLimit(limit)
		debug.SetGCPercent(gc)
	})
}

// testSettings are the settings of an in-process relay on loopback ports
// chosen by the kernel, with nothing read from the environment.
func testSettings(t *testing.T, dataDir string, extra ...string) *Settings {
	t.Helper()
	args := append([]string{"--data-dir", dataDir, "--api-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--seed-hosts-url=", "--admin-password", "sesame", "--memory-budget", "256MiB", "--plc-host", "http://127.0.0.1:1",
		"--trim=false"}, extra...)
	return mustParse(t, args, noEnv)
}

func get(t *testing.T, url, token string, header http.Header) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, _ := testutil.Do(t, req)
	return resp.StatusCode
}

// TestServeBuildRunShutdown builds the whole app from parsed settings on
// 127.0.0.1:0, checks both listeners answer and the API server's limits,
// then cancels the context as SIGTERM would: run must return nil and
// release the store.
func TestServeBuildRunShutdown(t *testing.T) {
	keepRuntimeSettings(t)
	dir := t.TempDir()
	a, err := buildApp(testSettings(t, dir), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.servers) != 2 {
		t.Fatalf("%d servers, want the API and the admin listener", len(a.servers))
	}
	api, adm := "http://"+a.servers[0].ln.Addr().String(), "http://"+a.servers[1].ln.Addr().String()
	for _, s := range a.servers {
		if s.srv.ReadHeaderTimeout != 10*time.Second || s.srv.ReadTimeout != 30*time.Second || s.srv.IdleTimeout != 120*time.Second || s.srv.MaxHeaderBytes != 16<<10 {
			t.Errorf("server limits: header timeout %v, idle %v, max header %d", s.srv.ReadHeaderTimeout, s.srv.IdleTimeout, s.srv.MaxHeaderBytes)
		}
	}
	if a.servers[0].srv.ConnState == nil || a.servers[1].srv.ConnState != nil {
		t.Error("the public listener's connections are not capped, or the admin listener's are")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()

	if code := get(t, api+"/xrpc/_health", "", nil); code != http.StatusOK {
		t.Errorf("health: %d", code)
	}
	big := http.Header{"X-Big": {strings.Repeat("x", 100<<10)}}
	if code := get(t, api+"/xrpc/_health", "", big); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KiB of headers: %d, want 431", code)
	}
	if code := get(t, adm+"/metrics", "", nil); code != http.StatusOK {
		t.Errorf("metrics: %d", code)
	}
	if code := get(t, adm+"/admin/subs/getEnabled", "", nil); code != http.StatusUnauthorized {
		t.Errorf("admin without token: %d, want 401", code)
	}
	if code := get(t, adm+"/admin/subs/getEnabled", "sesame", nil); code != http.StatusOK {
		t.Errorf("admin with token: %d", code)
	}

	shutDown(t, cancel, done, a, dir)
}

// shutDown cancels a running app (its run returns on done) as SIGTERM
// would and checks that run returns nil within a minute, the API listener
// no longer accepts and the store in dir was released. It returns that
// store, reopened and closed at cleanup.
func shutDown(t *testing.T, cancel context.CancelFunc, done <-chan error, a *app, dir string) *store.Store {
	t.Helper()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not return within a minute of the cancel")
	}
	if _, err := net.Dial("tcp", a.servers[0].ln.Addr().String()); err == nil {
		t.Error("the API listener still accepts after shutdown")
	}
	st, err := store.Open(dir, store.Options{BlockCacheBytes: 8 << 20, MemTableBytes: 8 << 20})
	if err != nil {
		t.Fatalf("store not released: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	return st
}

// TestServeBuildFailureReleases: a listener that cannot bind fails the
// build, and what was already opened (the store) is released.
func TestServeBuildFailureReleases(t *testing.T) {
	keepRuntimeSettings(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	a, err := buildApp(testSettings(t, dir, "--admin-listen", taken.Addr().String()), slog.New(slog.DiscardHandler))
	if err == nil {
		_ = a.close()
		t.Fatal("built with the admin address taken")
	}
	st, err := store.Open(dir, store.Options{BlockCacheBytes: 8 << 20, MemTableBytes: 8 << 20})
	if err != nil {
		t.Fatalf("store not released after the failed build: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestConsumerOutlivesReadTimeout: the API server's ReadTimeout bounds
// requests, not the WebSocket consumers it hijacks (net/http clears the
// deadlines): an idle consumer is still connected long after it.
func TestConsumerOutlivesReadTimeout(t *testing.T) {
	keepRuntimeSettings(t)
	old := readTimeout
	readTimeout = 200 * time.Millisecond
	defer func() { readTimeout = old }()
	a, err := buildApp(testSettings(t, t.TempDir()), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()
	defer func() { cancel(); <-done }()
	api := a.servers[0].ln.Addr().String()
	for _, path := range []string{"/xrpc/com.atproto.sync.subscribeRepos", "/subscribe"} {
		conn, _, _, err := ws.Dial(context.Background(), "ws://"+api+path)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(4 * readTimeout)
		// Still open: a read waits for data instead of failing at once.
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		var b [1]byte
		_, err = conn.Read(b[:])
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("%s: idle consumer after the read timeout: %v, want it still connected", path, err)
		}
		conn.Close()
	}
}
