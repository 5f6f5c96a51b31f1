package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/pool"
	"github.com/atrelay/relay/store"
)

// TestSplitterSettings checks the splitter's table: every shared serve
// setting still exists, no flag or variable is defined twice, the
// variable-then-flag precedence holds, --upstream is required, and
// --print-env lists every variable.
func TestSplitterSettings(t *testing.T) {
	table, err := splitterTable(&splitterSettings{})
	if err != nil {
		t.Fatal(err)
	}
	flags, envs := map[string]bool{}, map[string]bool{}
	for _, e := range table {
		if flags[e.flag] || envs[e.env] {
			t.Errorf("--%s / %s defined twice", e.flag, e.env)
		}
		flags[e.flag], envs[e.env] = true, true
	}
	env := envOf(map[string]string{"RELAY_SPLITTER_UPSTREAM": "wss://relay.example", "RELAY_REPLAY_WINDOW": "24h",
		"RELAY_SPLITTER_BACKFILL": "true"})
	s, _, err := parseSplitterSettings([]string{"--replay-window", "48h", "--proxy-max-in-flight", "9"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.Splitter.Upstream != "wss://relay.example" || !s.Splitter.Backfill || s.Store.ReplayWindow != 48*time.Hour ||
		s.Splitter.ProxyMaxInFlight != 9 || s.APIListen != ":2470" {
		t.Errorf("parsed %+v / %+v", s.Splitter, s.Store)
	}
	if _, _, err := parseSplitterSettings(nil, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), "RELAY_SPLITTER_UPSTREAM") {
		t.Errorf("no upstream: %v", err)
	}
	if _, _, err := parseSplitterSettings([]string{"--plc-host", "x"}, env, io.Discard); err == nil {
		t.Error("a relay-only flag was accepted")
	}
	var b bytes.Buffer
	if err := writeSplitterEnv(&b, table); err != nil {
		t.Fatal(err)
	}
	for env := range envs {
		if !strings.Contains(b.String(), "\n"+env+"=") {
			t.Errorf("--print-env lacks %s", env)
		}
	}
	if !strings.Contains(b.String(), "\nRELAY_DATA_DIR=/var/lib/relay-splitter-1\n") {
		t.Error("--print-env: the data directory is not the unit's")
	}
}

// fakeRelay is an upstream serving a fixed log of #identity frames.
func fakeRelay(t *testing.T, n int) string {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{Sync: store.NoSync, BlockCacheBytes: 8 << 20, MemTableBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	hub, err := firehose.NewHub(store.FirehoseLog{St: st}, firehose.Config{})
	if err != nil {
		t.Fatal(err)
	}
	frames := pool.NewFrames(pool.NewBuffers(nil, "fake"))
	for seq := 1; seq <= n; seq++ {
		f := event.AppendIdentity(nil, &event.Identity{Seq: int64(seq), DID: []byte("did:plc:fake"), Time: []byte("2026-11-25T22:17:57.806Z")})
		if err := st.AppendAt([]store.SeqEvent{{Seq: store.Seq(seq), Kind: store.KindIdentity, DID: []byte("did:plc:fake"), Frame: f}}); err != nil {
			t.Fatal(err)
		}
		if err := hub.Publish(uint64(seq), frames.Copy(f)); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(hub)
	t.Cleanup(func() {
		srv.Close()
		hub.Close()
		_ = st.Close()
	})
	return "ws://" + strings.TrimPrefix(srv.URL, "http://")
}

// TestSplitterBuildRunShutdown builds `relay splitter` from parsed settings
// on 127.0.0.1:0 against a fake upstream, checks it copies the stream and
// serves it, its health, metrics, admin and pprof behind the token, then
// cancels as SIGTERM would: run returns nil and releases the store.
func TestSplitterBuildRunShutdown(t *testing.T) {
	keepRuntimeSettings(t)
	dir := t.TempDir()
	up := fakeRelay(t, 20)
	s, _, err := parseSplitterSettings([]string{"--upstream", up, "--backfill", "--data-dir", dir, "--api-listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0", "--admin-password", "sesame", "--memory-budget", "256MiB", "--trim=false"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := buildSplitterApp(s, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	api, adm := "http://"+a.servers[0].ln.Addr().String(), "http://"+a.servers[1].ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()

	conn, br, _, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(api, "http")+"/xrpc/com.atproto.sync.subscribeRepos?cursor=0")
	if err != nil {
		t.Fatal(err)
	}
	var src io.Reader = conn
	if br != nil {
		src = io.MultiReader(br, conn)
	}
	rw := struct {
		io.Reader
		io.Writer
	}{src, conn}
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	for want := int64(1); want <= 20; want++ {
		b, err := wsutil.ReadServerBinary(rw)
		var p event.Peeked
		if err != nil || event.Peek(b, &p) != nil || p.Seq != want {
			t.Fatalf("frame %d: seq %d, %v", want, p.Seq, err)
		}
	}
	var h struct{ Status, Upstream string }
	resp, err := http.Get(api + "/xrpc/_health")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != 200 || h.Status != "ok" || h.Upstream != "connected" {
		t.Errorf("health %d %+v %v", resp.StatusCode, h, err)
	}
	resp.Body.Close()
	for _, c := range []struct {
		url, token string
		want       int
	}{
		{adm + "/metrics", "", 200},
		{adm + "/admin/consumers/list", "", 401},
		{adm + "/admin/consumers/list", "sesame", 200},
		{adm + "/admin/subs/getUpstreamConns", "sesame", 200},
		{adm + "/debug/pprof/cmdline", "", 401},
		{adm + "/debug/pprof/cmdline", "sesame", 200},
	} {
		if code := get(t, c.url, c.token, nil); code != c.want {
			t.Errorf("GET %s (token %q): %d, want %d", c.url, c.token, code, c.want)
		}
	}
	_ = conn.Close()

	if n := shutDown(t, cancel, done, &a.app, dir).NewestSeq(); n != 20 {
		t.Errorf("splitter stored up to %d, want 20", n)
	}
}
