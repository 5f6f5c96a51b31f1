package memory

import (
	"bytes"
	"errors"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// keepRuntime restores GOMEMLIMIT and GOGC after the test, since Apply
// changes them for the whole test binary.
func keepRuntime(t *testing.T) {
	t.Helper()
	limit, gogc := debug.SetMemoryLimit(-1), currentGOGC()
	t.Cleanup(func() {
		debug.SetMemoryLimit(limit)
		debug.SetGCPercent(gogc)
	})
}

// testLog returns a logger writing into the returned buffer.
func testLog() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

// env returns a lookup function over a fixed map.
func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestApplyFromConfig(t *testing.T) {
	keepRuntime(t)
	log, _ := testLog()
	h := fakeHost(t, map[string]string{"/proc/meminfo": "MemTotal: 1024 kB\n"})
	s, err := apply(Config{Budget: 4 << 30, OffHeap: 512 << 20, GOGC: 150}, log, env(nil), h)
	if err != nil {
		t.Fatal(err)
	}
	wantLimit, _ := memoryLimit(4<<30, 512<<20)
	want := Settings{
		Budget: 4 << 30, BudgetSource: SourceConfig, OffHeap: 512 << 20,
		MemoryLimit: wantLimit, MemoryLimitSource: SourceConfig,
		GOGC: 150, GOGCSource: SourceConfig,
		GOMAXPROCS: runtime.GOMAXPROCS(0), GOMAXPROCSSource: SourceRuntime,
	}
	if s != want {
		t.Fatalf("apply = %+v\nwant    %+v", s, want)
	}
	if got := debug.SetMemoryLimit(-1); got != wantLimit {
		t.Fatalf("runtime GOMEMLIMIT = %d, want %d", got, wantLimit)
	}
	if got := currentGOGC(); got != 150 {
		t.Fatalf("runtime GOGC = %d, want 150", got)
	}
}

func TestApplyGOGCOff(t *testing.T) {
	keepRuntime(t)
	log, _ := testLog()
	s, err := apply(Config{Budget: 1 << 30, GOGC: -1}, log, env(nil), fakeHost(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if s.GOGC != -1 || currentGOGC() != -1 {
		t.Fatalf("GOGC off: settings %d, runtime %d", s.GOGC, currentGOGC())
	}
}

func TestApplyEnvOverrides(t *testing.T) {
	keepRuntime(t)
	// What the runtime would have read from GOGC=77 GOMEMLIMIT=1GiB at start.
	debug.SetMemoryLimit(1 << 30)
	debug.SetGCPercent(77)
	log, buf := testLog()
	lookup := env(map[string]string{"GOGC": "77", "GOMEMLIMIT": "1GiB", "GOMAXPROCS": "3"})
	s, err := apply(Config{Budget: 4 << 30, GOGC: 150}, log, lookup, fakeHost(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Errorf("GOMEMLIMIT changed to %d despite the environment", got)
	}
	if got := currentGOGC(); got != 77 {
		t.Errorf("GOGC changed to %d despite the environment", got)
	}
	if s.MemoryLimit != 1<<30 || s.MemoryLimitSource != SourceEnv ||
		s.GOGC != 77 || s.GOGCSource != SourceEnv || s.GOMAXPROCSSource != SourceEnv {
		t.Errorf("settings %+v do not report the environment's values", s)
	}
	for _, want := range []string{"GOMEMLIMIT set in the environment", "GOGC set in the environment", "gomaxprocs_source=env"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestApplyEnvOverridesBudgetTooSmall(t *testing.T) {
	keepRuntime(t)
	debug.SetMemoryLimit(1 << 30)
	log, _ := testLog()
	// The operator's GOMEMLIMIT stands even when the budget could not give one.
	s, err := apply(Config{Budget: 1 << 20}, log, env(map[string]string{"GOMEMLIMIT": "1GiB"}), fakeHost(t, nil))
	if err != nil || s.MemoryLimit != 1<<30 || s.MemoryLimitSource != SourceEnv {
		t.Fatalf("apply = %+v, %v", s, err)
	}
}

func TestApplyRealEnvironment(t *testing.T) {
	keepRuntime(t)
	debug.SetGCPercent(55)
	t.Setenv("GOGC", "55")
	log, _ := testLog()
	s, err := Apply(Config{Budget: 2 << 30, GOGC: 150}, log)
	if err != nil {
		t.Fatal(err)
	}
	if got := currentGOGC(); got != 55 || s.GOGCSource != SourceEnv {
		t.Fatalf("runtime GOGC %d, source %s; want 55 from env", got, s.GOGCSource)
	}
	if s.MemoryLimitSource != SourceConfig || debug.SetMemoryLimit(-1) != s.MemoryLimit {
		t.Fatalf("GOMEMLIMIT not applied from config: %+v", s)
	}
}

func TestApplyBudgetSources(t *testing.T) {
	v2 := func(limit string) map[string]string {
		return map[string]string{
			"/proc/self/cgroup":         "0::/\n",
			"/sys/fs/cgroup/memory.max": limit,
			"/proc/meminfo":             "MemTotal: 8388608 kB\n",
		}
	}
	f := func(name string, cfg Config, files map[string]string, wantBudget int64, wantSource Source, wantErr error) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			keepRuntime(t)
			log, _ := testLog()
			limitBefore := debug.SetMemoryLimit(-1)
			s, err := apply(cfg, log, env(nil), fakeHost(t, files))
			if !errors.Is(err, wantErr) {
				t.Fatalf("apply error %v, want %v", err, wantErr)
			}
			if err != nil {
				if got := debug.SetMemoryLimit(-1); got != limitBefore {
					t.Fatalf("failed apply changed GOMEMLIMIT %d -> %d", limitBefore, got)
				}
				return
			}
			if s.Budget != wantBudget || s.BudgetSource != wantSource {
				t.Fatalf("budget %d from %s, want %d from %s", s.Budget, s.BudgetSource, wantBudget, wantSource)
			}
		})
	}
	f("cgroup", Config{}, v2("2147483648\n"), 2<<30, SourceCgroup, nil)
	f("config under cgroup", Config{Budget: 1 << 30}, v2("2147483648\n"), 1<<30, SourceConfig, nil)
	f("config over cgroup is clamped", Config{Budget: 4 << 30}, v2("2147483648\n"), 2<<30, SourceCgroup, nil)
	f("machine", Config{}, v2("max\n"), 8<<30, SourceMachine, nil)
	f("broken cgroup falls back to config", Config{Budget: 1 << 30}, v2("garbage\n"), 1<<30, SourceConfig, nil)
	f("nothing to go on", Config{}, nil, 0, "", ErrNoBudget)
	f("budget too small", Config{Budget: 60 << 20}, nil, 0, "", ErrBudgetTooSmall)
	f("below MinBudget", Config{Budget: MinBudget - 1}, nil, 0, "", ErrBudgetTooSmall)
	f("MinBudget", Config{Budget: MinBudget}, nil, MinBudget, SourceConfig, nil)
	f("invalid config", Config{GOGC: -7}, nil, 0, "", ErrBadGOGC)
}

func TestTuneCAllocator(t *testing.T) {
	if !TuneCAllocator() {
		t.Fatal("glibc refused a mallopt setting")
	}
}
