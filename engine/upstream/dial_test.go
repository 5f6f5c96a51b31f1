package upstream

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/gobwas/ws"

	"github.com/atrelay/relay/engine/atproto/syntax"
)

func TestNormalizeHost(t *testing.T) {
	f := func(in string, insecure bool, want string, wantErr error) {
		t.Helper()
		got, err := normalizeHost(in, insecure)
		if wantErr != nil {
			if !errors.Is(err, wantErr) {
				t.Fatalf("normalizeHost(%q, %v): err %v, want %v", in, insecure, err, wantErr)
			}
			return
		}
		if err != nil || got != want {
			t.Fatalf("normalizeHost(%q, %v) = %q, %v; want %q", in, insecure, got, err, want)
		}
	}
	f("PDS.Example.com", false, "pds.example.com", nil)
	f("localhost:2583", true, "localhost:2583", nil)
	f("localhost:2583", false, "", ErrInsecureNotAllowed)
	f("localhost:0", true, "", ErrInvalidHostname)
	f("localhost:065", true, "", ErrInvalidHostname)
	f("localhost:99999", true, "", ErrInvalidHostname)
	f("", false, "", ErrInvalidHostname)
	f("a..b", false, "", ErrInvalidHostname)
	f(".a.b", false, "", ErrInvalidHostname)
	f("a/b", false, "", ErrInvalidHostname)
	f("a b", false, "", ErrInvalidHostname)
	f("a?cursor=1", false, "", ErrInvalidHostname)
	f(string(make([]byte, 254)), false, "", ErrInvalidHostname)
	f("127.0.0.1:2583", true, "127.0.0.1:2583", nil)
	f("127.0.0.1:2583", false, "", ErrInsecureNotAllowed)
	f("10.0.0.1:2583", true, "", syntax.ErrHostIP)
	f("pds.example.com:2583", true, "", ErrInvalidHostname)
}

func TestPublicAddr(t *testing.T) {
	f := func(s string, want bool) {
		t.Helper()
		if got := publicAddr(netip.MustParseAddr(s)); got != want {
			t.Fatalf("publicAddr(%s) = %v, want %v", s, got, want)
		}
	}
	f("8.8.8.8", true)
	f("2606:4700::1111", true)
	f("127.0.0.1", false)
	f("::1", false)
	f("10.1.2.3", false)
	f("172.16.0.1", false)
	f("192.168.1.1", false)
	f("169.254.169.254", false)
	f("fe80::1", false)
	f("fd00::1", false)
	f("0.0.0.0", false)
	f("::", false)
	f("100.64.0.1", false)
	f("224.0.0.1", false)
	f("::ffff:127.0.0.1", false)
	f("::ffff:8.8.8.8", true)
	if err := controlPublicOnly("tcp", "127.0.0.1:443", nil); !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("control loopback: %v", err)
	}
	if err := controlPublicOnly("tcp", "8.8.8.8:443", nil); err != nil {
		t.Fatalf("control public: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	l := &Loop{cfg: Config{
		BackoffMin: time.Second, BackoffMax: 30 * time.Second,
		SlowAfterFailures: 15, SlowRetry: 15 * time.Minute,
	}}
	f := func(failures int, lo, hi time.Duration) {
		t.Helper()
		for range 200 {
			if d := l.backoff(failures); d < lo || d > hi {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", failures, d, lo, hi)
			}
		}
	}
	f(1, 500*time.Millisecond, time.Second)
	f(2, time.Second, 2*time.Second)
	f(5, 8*time.Second, 16*time.Second)
	f(6, 15*time.Second, 30*time.Second)
	f(14, 15*time.Second, 30*time.Second)
	f(15, 10*time.Minute, 20*time.Minute)
	f(1000, 10*time.Minute, 20*time.Minute)
}

func TestHostQueue(t *testing.T) {
	q := newHostQueue()
	hs := make([]*Host, 300)
	for i := range hs {
		hs[i] = &Host{name: string(rune('a' + i%26))}
	}
	for i := range 100 { // wrap the ring before it grows
		q.push(hs[i])
		if h, _ := q.pop(); h != hs[i] {
			t.Fatalf("pop %d out of order", i)
		}
	}
	for _, h := range hs {
		q.push(h)
	}
	for i := range hs {
		if h, ok := q.pop(); !ok || h != hs[i] {
			t.Fatalf("pop %d: out of order after growth", i)
		}
	}
	q.close()
	if _, ok := q.pop(); ok {
		t.Fatal("pop after close")
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without Sink succeeded")
	}
	cfg := Config{Sink: func(*Host, Frame) bool { return true }, BackoffMin: time.Minute, BackoffMax: time.Second, Readers: -1}
	err := cfg.withDefaults().Validate()
	if err == nil {
		t.Fatal("inconsistent config accepted")
	}
}

// TestMetricsPreCreated: every reason's counter exists at zero from New, and
// Close unregisters the loop's series so the set can be reused.
func TestMetricsPreCreated(t *testing.T) {
	set := metrics.NewSet()
	cfg := Config{Sink: func(*Host, Frame) bool { return true }, Metrics: set, Readers: 1, MaxConcurrentDials: 1}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for r := range numReasons {
		line := `relay_upstream_errors_total{reason="` + r.String() + `"} 0`
		if !strings.Contains(buf.String(), line) {
			t.Fatalf("missing %q in\n%s", line, buf.String())
		}
	}
	_ = l.Close()
	if names := set.ListMetricNames(); len(names) != 0 {
		t.Fatalf("series left after Close: %v", names)
	}
	l2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = l2.Close()
}

func TestDevDialAddr(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := DevDialAddr(in); got != want {
			t.Fatalf("DevDialAddr(%q) = %q, want %q", in, got, want)
		}
	}
	f("pds-1.localhost:4433", "127.0.0.1:4433")
	f("A.B.LOCALHOST:443", "127.0.0.1:443")
	f("localhost:80", "localhost:80") // /etc/hosts answers it already
	f(".localhost:80", ".localhost:80")
	f("notlocalhost:80", "notlocalhost:80")
	f("pds.localhost.example.com:443", "pds.localhost.example.com:443")
	f("pds.example.com:443", "pds.example.com:443")
	f("pds-1.localhost", "pds-1.localhost") // no port: not an address
}

// TestDevLocalhostName: with the development switch, a host named under
// .localhost is connected on loopback without asking DNS (which would not
// know the name: the dial would fail).
func TestDevLocalhostName(t *testing.T) {
	ts := newTestServer(t, false, func(sc *srvConn) {
		if _, err := sc.Write(frameBytes(ws.OpBinary, true, payloadN(0, 10))); err != nil {
			return
		}
		sc.drain()
	})
	_, port, _ := strings.Cut(ts.hostname(), ":")
	c := newCollector()
	l := newTestLoop(t, testConfig(c.sink))
	h, err := l.Add("dev-7.localhost:"+port, HostOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	checkFrames(t, c, 1, func(int) int { return 10 })
	if h.Errors(ReasonDial) != 0 {
		t.Fatalf("%d dial errors", h.Errors(ReasonDial))
	}
}
