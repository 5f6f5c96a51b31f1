package fleet

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrelay/relay/bench/testca"
	"github.com/atrelay/relay/engine/upstream"
)

// TestTLSHosts: with Options.TLS the hosts are named pds-N.localhost:PORT
// and serve wss:// and https://. The relay's upstream loop, with the
// development switch and the test CA, subscribes over wss:// and receives
// every event from cursor 0; without the CA (system roots, as in
// production) every dial fails its TLS handshake and nothing is read.
func TestTLSHosts(t *testing.T) {
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	f := newTestFleet(t, Options{TLS: ca, Workload: Workload{Hosts: 2, AccountsPerHost: 3, Seed: 5}})
	for range 20 {
		if _, err := f.Step(); err != nil {
			t.Fatal(err)
		}
	}
	h := f.Hosts()[1]
	if !strings.HasPrefix(h.Name, "pds-1.localhost:") || h.URL() != "https://"+h.Name {
		t.Fatalf("host %q, URL %q", h.Name, h.URL())
	}

	// The DID documents point at the https:// endpoint.
	did := h.Accounts()[0]
	resp, err := http.Get(f.PLCURL() + "/" + did)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(doc), `"serviceEndpoint":"https://`+h.Name+`"`) {
		t.Fatalf("document does not name %s: %s", h.URL(), doc)
	}
	// XRPC over https (what describeServer probes and resync fetch).
	resp, err = ca.Client().Get(h.URL() + "/xrpc/com.atproto.sync.getRepo?did=" + did)
	if err != nil {
		t.Fatal(err)
	}
	car, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(car) == 0 {
		t.Fatalf("getRepo over https: %s, %d bytes", resp.Status, len(car))
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + h.Addr + "/xrpc/_health"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("the TLS host served plain http")
		}
	}

	subscribe := func(tlsCfg bool) (*upstream.Host, *atomic.Int64) {
		var frames atomic.Int64
		cfg := upstream.Config{
			Sink: func(_ *upstream.Host, fr upstream.Frame) bool {
				frames.Add(1)
				fr.Release()
				return true
			},
			Cursor:             func(*upstream.Host) (int64, bool) { return 0, true },
			AllowInsecureHosts: true, // the development switch: .localhost dials loopback
			BackoffMin:         10 * time.Millisecond,
			BackoffMax:         50 * time.Millisecond,
			Tick:               10 * time.Millisecond,
			Readers:            1,
			MaxConcurrentDials: 1,
		}
		if tlsCfg {
			cfg.TLSConfig = ca.ClientConfig()
		}
		l, err := upstream.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		uh, err := l.Add(h.Name, upstream.HostOptions{}) // not Insecure: wss://
		if err != nil {
			t.Fatal(err)
		}
		return uh, &frames
	}

	trusted, frames := subscribe(true)
	want := h.Seq()
	waitUntil(t, "every event over wss", func() bool { return frames.Load() >= want })
	if got := frames.Load(); got != want || trusted.Errors(upstream.ReasonTLS) != 0 {
		t.Fatalf("%d frames (want %d), %d TLS errors", got, want, trusted.Errors(upstream.ReasonTLS))
	}
	if st := h.Stats(); st.Connections != 1 || st.FramesSent != want {
		t.Fatalf("host stats %+v", st)
	}

	untrusted, none := subscribe(false)
	waitUntil(t, "TLS refusals", func() bool { return untrusted.Errors(upstream.ReasonTLS) >= 2 })
	if none.Load() != 0 || h.Stats().Connections != 1 {
		t.Fatalf("untrusted loop read %d frames; host saw %d subscriptions", none.Load(), h.Stats().Connections)
	}
}

// waitUntil polls cond; the deadline only guards against a hung test.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
