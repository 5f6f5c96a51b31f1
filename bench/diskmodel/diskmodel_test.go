package diskmodel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/relay/bench/capture"
	"github.com/atrelay/relay/bench/fleet"
	"github.com/atrelay/relay/bench/generate"
)

// smallCapture is 2,000 actions at 100 events/s: 20 s of receive times.
func smallCapture(t *testing.T) *capture.Capture {
	t.Helper()
	var buf bytes.Buffer
	_, err := generate.Generate(&buf, generate.Options{Workload: fleet.Workload{Hosts: 4, Seed: 2, EventsPerSecond: 100},
		Actions: 2000, Population: generate.Population{Accounts: 300}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := capture.OpenReaderAt(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRunRetainsTheWindow: 20 s of capture at TimeScale 30 is 10 minutes of
// model time; with a 2-minute window retention keeps about the last fifth
// of the events, and the report's counts agree with the capture.
func TestRunRetainsTheWindow(t *testing.T) {
	c := smallCapture(t)
	var frames, bytesIn int64
	it, err := c.Records()
	if err != nil {
		t.Fatal(err)
	}
	var times []int64 // receive times, in order
	rec, err := it.Next()
	for ; err == nil; rec, err = it.Next() {
		times = append(times, rec.RecvTime)
		frames++
		bytesIn += int64(len(rec.Frame))
	}
	if err != io.EOF {
		t.Fatal(err)
	}
	it.Close()
	first, last := times[0], times[len(times)-1]
	const scale, window, every = 30, 2 * time.Minute, 30 * time.Second
	rep, err := Run(context.Background(), c, Options{Dir: t.TempDir(), Window: window, TimeScale: scale, RetentionEvery: every})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != frames || rep.FrameBytes < bytesIn {
		t.Fatalf("appended %d events, %d bytes; the capture has %d frames, %d bytes", rep.Events, rep.FrameBytes, frames, bytesIn)
	}
	span := time.Duration((last - first) * scale)
	if d := rep.ModelSpan - span; d < -time.Millisecond || d > time.Millisecond {
		t.Fatalf("model span %v, want %v", rep.ModelSpan, span)
	}
	// Events whose model time is inside the window at the end must be
	// kept; those older than the window by more than a retention period
	// must be gone.
	var inWindow, tooOld int64
	for _, rt := range times {
		age := time.Duration((last - rt) * scale)
		switch {
		case age < window:
			inWindow++
		case age > window+every:
			tooOld++
		}
	}
	t.Logf("%+v", rep)
	if tooOld == 0 {
		t.Fatal("no event is older than the window: the test does not exercise retention")
	}
	if rep.Retained < inWindow || rep.Retained > frames-tooOld {
		t.Fatalf("retained %d events; %d are inside the window, %d of %d older than it", rep.Retained, inWindow, tooOld, frames)
	}
	if rep.DiskBytes == 0 || rep.WALBytes < uint64(bytesIn) || rep.WriteAmp < 1 || rep.BytesPerEvent() <= 0 {
		t.Fatalf("report %+v", rep)
	}
	if got, want := rep.DiskFor(time.Hour, 10), rep.BytesPerEvent()*36_000; math.Abs(got-want) > want*1e-9 {
		t.Fatalf("DiskFor(1h, 10/s) = %v, want %v", got, want)
	}
}

func TestRunBadOptions(t *testing.T) {
	for _, o := range []Options{{}, {Dir: "x", Window: time.Second}, {Dir: "x", TimeScale: -1}, {Dir: "x", BatchEvents: 1 << 20}} {
		if _, err := Run(context.Background(), nil, o); !errors.Is(err, ErrBadOptions) {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

// TestRunCLI: the command prints the report and extrapolates to the
// requested window, not to the modelled one.
func TestRunCLI(t *testing.T) {
	var buf bytes.Buffer
	if _, err := generate.Generate(&buf, generate.Options{Workload: fleet.Workload{Hosts: 2, Seed: 4}, Actions: 100,
		Population: generate.Population{Accounts: 50}}); err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/c.cap"
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := RunCLI([]string{"--capture", path, "--dir", t.TempDir() + "/db", "--window", "5m", "--extrapolate", "24h"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"appended     ", "write amplification", "window 24h0m0s  at 450 events/s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if err := RunCLI([]string{"--capture", path}, &out); err == nil {
		t.Error("no --dir accepted")
	}
}
