package harness

import (
	"bytes"
	"errors"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The CLI runs a capture through a relay that crawls and serves metrics,
// writes the JSON report and the chart, and charts reports again.
func TestRunCLI(t *testing.T) {
	path, _ := smallCapture(t, 2, 100)
	mr := newMiniRelay(t, 0, 0)
	dir := t.TempDir()
	jsonPath, pngPath := filepath.Join(dir, "run.json"), filepath.Join(dir, "run.png")
	var out bytes.Buffer
	err := RunCLI([]string{"--capture", path, "--relay-api", mr.api, "--relay-metrics", mr.metricsURL,
		"--consumers", "2", "--json", jsonPath, "--png", pngPath}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"fake PLC: http://127.0.0.1:", "replay hosts: localhost:", "verdict", "PASS", "consumer"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	rep, err := ReadReport(jsonPath)
	if err != nil || !rep.OK || rep.ExpectedEvents != 200 || len(rep.Samples) == 0 {
		t.Fatalf("report %v ok %v expected %d", err, rep.OK, rep.ExpectedEvents)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Fatal(err)
	}
	chartPath := filepath.Join(dir, "two.png")
	if err := RunCLI([]string{"chart", "--out", chartPath, jsonPath + "=a", jsonPath + "=b"}, &out); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(chartPath); err != nil || st.Size() == 0 {
		t.Fatalf("chart: %v", err)
	}
}

func TestRunCLIErrors(t *testing.T) {
	var out bytes.Buffer
	if err := RunCLI([]string{"--speed", "fast"}, &out); !errors.Is(err, ErrBadConfig) {
		t.Errorf("speed: %v", err)
	}
	if err := RunCLI([]string{"extra"}, &out); !errors.Is(err, ErrBadConfig) {
		t.Errorf("extra args: %v", err)
	}
	if err := RunCLI([]string{"chart"}, &out); !errors.Is(err, ErrBadConfig) {
		t.Errorf("chart without files: %v", err)
	}
	path, _ := smallCapture(t, 1, 5)
	// Nothing listens on the relay address: the readiness wait fails.
	err := RunCLI([]string{"--capture", path, "--relay-api", "http://127.0.0.1:1", "--connect-timeout", "200ms", "--quiet"}, &out)
	if !errors.Is(err, ErrRelayNotReady) {
		t.Errorf("no relay: %v", err)
	}
}

// TestRunCLIChildRelay: with --relay-cmd, a relay already answering at the
// API address is refused (the child could not listen there), and a child
// that exits ends the run at once rather than at its timeout.
func TestRunCLIChildRelay(t *testing.T) {
	var out bytes.Buffer
	path, _ := smallCapture(t, 1, 5)
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer busy.Close()
	err := RunCLI([]string{"--capture", path, "--relay-api", busy.URL, "--relay-cmd", "true", "--quiet"}, &out)
	if !errors.Is(err, ErrRelayAddrBusy) {
		t.Errorf("relay address taken: %v", err)
	}
	falseBin, lookErr := exec.LookPath("false")
	if lookErr != nil {
		t.Skip("no false(1) to stand in for a failing relay")
	}
	free := httptest.NewServer(http.NotFoundHandler())
	addr := free.URL
	free.Close() // nothing answers there now
	start := time.Now()
	err = RunCLI([]string{"--capture", path, "--relay-api", addr, "--relay-cmd", falseBin,
		"--connect-timeout", "1m", "--quiet"}, &out)
	if !errors.Is(err, ErrRelayExited) {
		t.Errorf("child exited: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("a dead child ended the run after %v", d)
	}
}
