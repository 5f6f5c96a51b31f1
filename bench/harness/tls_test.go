package harness

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/relay/bench/plc"
)

// TestTLSRun: with Config.TLS the replay hosts are pds-N.localhost:PORT
// over wss://; a relay trusting Harness.CAFile (loaded from the file, as
// a relay process would) runs the capture through, and one that does not
// trust it cannot crawl a single host. The CA file is gone after Close.
func TestTLSRun(t *testing.T) {
	path, _ := smallCapture(t, 2, 100)
	run := func(trust bool) (Report, string, error) {
		mr := newMiniRelay(t, 0, 0)
		cfg := quietConfig(path, 2)
		cfg.TLS = true
		h, err := Prepare(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		for _, name := range h.Hostnames() {
			if !strings.Contains(name, ".localhost:") {
				t.Fatalf("host %q", name)
			}
		}
		if trust {
			pem, err := os.ReadFile(h.CAFile())
			if err != nil {
				t.Fatal(err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				t.Fatal("CA file does not load")
			}
			mr.roots.Store(pool)
		}
		rep, err := h.Run(context.Background(), Relay{API: mr.api, Metrics: mr.metricsURL})
		return rep, h.CAFile(), err
	}
	rep, caFile, err := run(true)
	if err != nil || !rep.OK || !rep.TLS || rep.ExpectedEvents != 200 {
		t.Fatalf("trusted run: %v, ok %v, tls %v, expected %d", err, rep.OK, rep.TLS, rep.ExpectedEvents)
	}
	if _, err := os.Stat(caFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("CA file left behind: %v", err)
	}
	if _, _, err := run(false); !errors.Is(err, ErrCrawl) {
		t.Fatalf("untrusted relay: %v", err)
	}
}

// TestPLCBehaviour: Config.PLC is installed on the fake PLC and reported.
func TestPLCBehaviour(t *testing.T) {
	path, _ := smallCapture(t, 1, 20)
	cfg := quietConfig(path, 1)
	cfg.PLC = plc.Behaviour{LatencyP50: 80 * time.Millisecond, LatencyP99: 400 * time.Millisecond, RatePerSecond: 1}
	h, err := Prepare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got := h.PLC().Behaviour(); got != cfg.PLC {
		t.Fatalf("behaviour %+v", got)
	}
	// The bucket holds one request: the second in a row is refused.
	for i, want := range []int{http.StatusNotFound, http.StatusTooManyRequests} {
		resp, err := http.Get(h.PLCURL() + "/did:plc:nobody")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("request %d: %s", i, resp.Status)
		}
	}
	mr := newMiniRelay(t, 0, 0)
	rep, err := h.Run(context.Background(), Relay{API: mr.api})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PLCBehaviour != "latency 80ms,400ms, rate 1/s burst 1" || rep.PLCCounters.RateLimited != 1 || rep.PLCCounters.NotFound != 1 {
		t.Fatalf("report: %q %+v", rep.PLCBehaviour, rep.PLCCounters)
	}

	cfg.PLC.ErrorRate = 2
	if _, err := Prepare(context.Background(), cfg); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("bad behaviour: %v", err)
	}
}

// TestRunCLITLS: --tls writes the CA file and puts its path in the relay
// command line ({ca}); {ca} without --tls and bad PLC flags are refused.
func TestRunCLITLS(t *testing.T) {
	var out bytes.Buffer
	path, _ := smallCapture(t, 1, 5)
	if err := RunCLI([]string{"--capture", path, "--relay-cmd", "relay --test-ca {ca}", "--quiet"}, &out); !errors.Is(err, ErrBadConfig) {
		t.Errorf("{ca} without --tls: %v", err)
	}
	for _, bad := range [][]string{{"--plc-latency", "slow"}, {"--plc-errors", "-1"}, {"--plc-rate", "-5"}} {
		if err := RunCLI(append([]string{"--capture", path, "--quiet"}, bad...), &out); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%v: %v", bad, err)
		}
	}

	// The "relay" copies the CA file it was given and exits, which ends the run.
	cp, err := exec.LookPath("cp")
	if err != nil {
		t.Skip("no cp(1) to stand in for the relay")
	}
	free := httptest.NewServer(http.NotFoundHandler())
	addr := free.URL
	free.Close()
	copied := filepath.Join(t.TempDir(), "copy.pem")
	out.Reset()
	err = RunCLI([]string{"--capture", path, "--relay-api", addr, "--tls", "--plc-latency", "80ms,400ms",
		"--relay-cmd", cp + " {ca} " + copied, "--connect-timeout", "1m", "--quiet"}, &out)
	if !errors.Is(err, ErrRelayExited) {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	pem, err := os.ReadFile(copied)
	if err != nil || !x509.NewCertPool().AppendCertsFromPEM(pem) {
		t.Fatalf("the relay got no CA file: %v", err)
	}
	for _, want := range []string{"replay hosts: pds-0.localhost:", "test CA (trust it in the relay, for tests only): "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
