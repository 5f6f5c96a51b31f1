package splitter

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/pool"
)

// TestFutureCursorWait shows a cursor a little ahead of the splitter waits
// for the log instead of failing, a cursor that never arrives gets
// FutureCursor after the wait, and waiters beyond MaxCursorWaiters are
// answered at once.
func TestFutureCursorWait(t *testing.T) {
	src := startSource(t, "")
	src.add(span(1, 100)...)
	cfg := fastConfig(src.url())
	cfg.FutureCursorWait, cfg.MaxCursorWaiters = 2*time.Second, 1
	n := startNode(t, cfg, 1<<20)
	n.waitSeq(100)

	go func() {
		time.Sleep(50 * time.Millisecond)
		src.add(span(101, 110)...)
	}()
	ahead := dial(t, n.url(), 105) // returns once the splitter stored 105
	if seqs := seqsOf(t, ahead.waitFrames(t, 5)); !slices.Equal(seqs, span(106, 110)) {
		t.Fatalf("consumer ahead by 5 got %v", seqs)
	}
	if r := counter(t, n.set, `relay_splitter_cursor_waits_total{result="reached"}`); r != 1 {
		t.Errorf("reached %d", r)
	}

	far := make(chan *consumer, 1)
	go func() {
		c, err := tryDial(t, n.url(), 1000)
		if err != nil {
			t.Error(err)
		}
		far <- c
	}()
	waitFor(t, "a waiting request", func() bool { return len(n.sp.api.waiters) == 1 })
	busy := dial(t, n.url(), 2000) // the one waiter slot is taken
	checkFutureCursor(t, "busy", busy)
	if c := <-far; c != nil {
		checkFutureCursor(t, "far", c)
	}
	for result, want := range map[string]uint64{"busy": 1, "timeout": 1} {
		if got := counter(t, n.set, `relay_splitter_cursor_waits_total{result="`+result+`"}`); got != want {
			t.Errorf("waits %s = %d, want %d", result, got, want)
		}
	}
}

// checkFutureCursor waits for c's connection to end and checks it got the
// FutureCursor error frame.
func checkFutureCursor(t *testing.T, name string, c *consumer) {
	t.Helper()
	<-c.Done()
	frames := c.Frames()
	var p event.Peeked
	if len(frames) != 1 || event.Peek(frames[0], &p) != nil || p.Kind != event.KindError || string(p.Name) != "FutureCursor" {
		t.Fatalf("%s: want one FutureCursor error frame, got %d frames", name, len(frames))
	}
}

// TestPassThroughAndHealth checks the com.atproto.sync.* methods reach the
// upstream with the client's address and bounded bodies, time and
// concurrency, other methods are refused, and /xrpc/_health follows the
// splitter's own state.
func TestPassThroughAndHealth(t *testing.T) {
	src := startSource(t, "")
	src.add(1)
	type echo struct{ Method, Path, Query, XFF, Host, Body string }
	reply := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_ = json.NewEncoder(w).Encode(echo{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Forwarded-For"), r.Host, string(b)})
	}
	src.mux.HandleFunc("GET /xrpc/com.atproto.sync.listRepos", reply)
	src.mux.HandleFunc("POST /xrpc/com.atproto.sync.requestCrawl", reply)
	src.mux.HandleFunc("GET /xrpc/com.atproto.sync.getRepo", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers
	})
	release := make(chan struct{})
	var blocked atomic.Int32
	src.mux.HandleFunc("GET /xrpc/com.atproto.sync.getBlob", func(w http.ResponseWriter, r *http.Request) {
		blocked.Add(1)
		<-release
	})
	cfg := fastConfig(src.url())
	cfg.ProxyTimeout, cfg.ProxyMaxInFlight, cfg.ProxyMaxBodyBytes, cfg.UnhealthyAfter = 300*time.Millisecond, 2, 100, 200*time.Millisecond
	n := startNode(t, cfg, 1<<20)
	n.waitSeq(1)
	base := "http://" + n.http.addr

	do := func(method, path string, body io.Reader) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	var e echo
	code, b := do("GET", "/xrpc/com.atproto.sync.listRepos?limit=5", nil)
	if err := json.Unmarshal(b, &e); code != 200 || err != nil || e.Query != "limit=5" || e.XFF != "127.0.0.1" || e.Host != src.http.addr {
		t.Errorf("listRepos: %d %s", code, b)
	}
	code, b = do("POST", "/xrpc/com.atproto.sync.requestCrawl", strings.NewReader(`{"hostname":"pds.example"}`))
	if err := json.Unmarshal(b, &e); code != 200 || err != nil || e.Body != `{"hostname":"pds.example"}` {
		t.Errorf("requestCrawl: %d %s", code, b)
	}
	big := strings.Repeat("x", 200)
	if code, b = do("POST", "/xrpc/com.atproto.sync.requestCrawl", strings.NewReader(big)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("requestCrawl with a declared big body: %d %s", code, b)
	}
	// No Content-Length: the limit bites while the body streams.
	if code, b = do("POST", "/xrpc/com.atproto.sync.requestCrawl", io.MultiReader(strings.NewReader(big))); code != http.StatusRequestEntityTooLarge {
		t.Errorf("requestCrawl with a chunked big body: %d %s", code, b)
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"POST", "/xrpc/com.atproto.sync.listRepos", http.StatusMethodNotAllowed},
		{"PUT", "/xrpc/com.atproto.sync.requestCrawl", http.StatusMethodNotAllowed},
		{"GET", "/xrpc/app.bsky.feed.getTimeline", http.StatusNotFound},
		{"GET", "/xrpc/com.atproto.sync.x%2F..%2F..%2Fadmin", http.StatusNotFound},
		{"GET", "/xrpc/com.atproto.sync.getRepo?did=did:plc:x", http.StatusBadGateway}, // the upstream never answers
	} {
		if code, b := do(c.method, c.path, nil); code != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, code, b, c.want)
		}
	}

	// Two requests in flight fill the bound; a third is refused.
	done := make(chan int, 2)
	for range 2 {
		go func() {
			code, _ := do("GET", "/xrpc/com.atproto.sync.getBlob", nil)
			done <- code
		}()
	}
	waitFor(t, "two blocked requests", func() bool { return blocked.Load() == 2 })
	if code, _ := do("GET", "/xrpc/com.atproto.sync.listRepos", nil); code != http.StatusServiceUnavailable {
		t.Errorf("third request in flight: %d, want 503", code)
	}
	close(release)
	<-done
	<-done
	for result, want := range map[string]uint64{"ok": 4, "busy": 1, "too_large": 2, "refused": 4, "upstream_failed": 1} {
		if got := counter(t, n.set, `relay_splitter_proxy_requests_total{result="`+result+`"}`); got != want {
			t.Errorf("proxy %s = %d, want %d", result, got, want)
		}
	}

	var h healthBody
	code, b = do("GET", "/xrpc/_health", nil)
	if err := json.Unmarshal(b, &h); code != 200 || err != nil || h.Status != "ok" || h.Upstream != "connected" || h.Seq != 1 {
		t.Errorf("health while connected: %d %s", code, b)
	}
	src.stop()
	waitFor(t, "health to turn", func() bool {
		code, b = do("GET", "/xrpc/_health", nil)
		return code == http.StatusServiceUnavailable
	})
	if err := json.Unmarshal(b, &h); err != nil || h.Status != "error" || h.Upstream != "disconnected" {
		t.Errorf("health after the upstream left: %s", b)
	}
}

// TestWSS follows an upstream over TLS (wss:// for the stream, https://
// for the pass-through).
func TestWSS(t *testing.T) {
	src := &source{logNode: logNode{t: t, dir: t.TempDir(), ring: 1 << 20},
		frames: pool.NewFrames(pool.NewBuffers(nil, "source"))}
	src.open()
	mux := http.NewServeMux()
	mux.Handle(subscribePath, src.hub)
	mux.HandleFunc("GET /xrpc/com.atproto.sync.listHosts", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"hosts":[]}`)
	})
	ts := httptest.NewUnstartedServer(mux)
	ts.StartTLS()
	t.Cleanup(func() {
		ts.Close()
		src.hub.Close()
		_ = src.st.Close()
	})
	src.add(span(1, 50)...)
	cfg := fastConfig("wss://" + strings.TrimPrefix(ts.URL, "https://"))
	cfg.TLSConfig = ts.Client().Transport.(*http.Transport).TLSClientConfig
	n := startNode(t, cfg, 1<<20)
	n.waitSeq(50)
	_, frames := logged(t, n.st, 0)
	wantSeqs, want := logged(t, src.st, 0)
	sameStream(t, "log over TLS", frames, wantSeqs, want)
	resp, err := http.Get("http://" + n.http.addr + "/xrpc/com.atproto.sync.listHosts")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(b, []byte(`{"hosts":[]}`)) {
		t.Errorf("listHosts over https: %d %s", resp.StatusCode, b)
	}
}
