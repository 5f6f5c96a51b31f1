package memory

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// Source says where a setting Apply reports came from; its String is the
// label value on relay_runtime_settings_info.
type Source string

// Sources of a setting.
const (
	// SourceConfig: the relay's own configuration (RELAY_* or flags).
	SourceConfig Source = "config"
	// SourceEnv: the Go runtime's environment variable (GOGC, GOMEMLIMIT,
	// GOMAXPROCS), set by the operator; it wins over the configuration.
	SourceEnv Source = "env"
	// SourceCgroup: the process's cgroup memory limit.
	SourceCgroup Source = "cgroup"
	// SourceMachine: the machine's total memory (/proc/meminfo).
	SourceMachine Source = "machine"
	// SourceRuntime: the Go runtime's own default (GOMAXPROCS from CPUs,
	// affinity and cgroup CPU quota).
	SourceRuntime Source = "runtime"
)

// Settings is what Apply settled on. A plain value.
type Settings struct {
	// Budget is the process memory budget in bytes, and BudgetSource where it
	// came from (config, cgroup or machine).
	Budget       int64
	BudgetSource Source
	// CgroupLimit is the cgroup memory limit found, 0 when none.
	CgroupLimit int64
	// OffHeap is the part of Budget reserved for memory outside the Go heap.
	OffHeap int64
	// MemoryLimit is the GOMEMLIMIT in force, in bytes; MemoryLimitSource is
	// config (derived from Budget) or env.
	MemoryLimit       int64
	MemoryLimitSource Source
	// GOGC is the GC percentage in force (-1: off); GOGCSource is config or env.
	GOGC       int
	GOGCSource Source
	// GOMAXPROCS is the runtime's value; GOMAXPROCSSource is env or runtime.
	GOMAXPROCS       int
	GOMAXPROCSSource Source
}

// Apply resolves cfg's budget, sets GOMEMLIMIT and GOGC unless the operator
// set the GOMEMLIMIT or GOGC environment variables, reports GOMAXPROCS
// without touching it (see the package doc), and logs the outcome on log.
// It changes process-wide runtime settings, so call it once, early in main.
// On error nothing has been changed. A nil log discards the messages.
func Apply(cfg Config, log *slog.Logger) (Settings, error) {
	return apply(cfg, log, os.LookupEnv, host{})
}

// apply is Apply with the environment and the host's files injected.
func apply(cfg Config, log *slog.Logger, lookupEnv func(string) (string, bool), h host) (Settings, error) {
	if err := cfg.Validate(); err != nil {
		return Settings{}, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	s := Settings{OffHeap: cfg.OffHeap}

	cgroupLimit, err := h.cgroupLimit()
	if err != nil {
		// A cgroup file we cannot parse leaves us with the configured or
		// machine budget; starting is better than refusing over it.
		log.Warn("memory: cgroup limit unreadable, ignoring it", "err", err)
		cgroupLimit = 0
	}
	s.CgroupLimit = cgroupLimit
	switch {
	case cfg.Budget > 0 && cgroupLimit > 0 && cfg.Budget > cgroupLimit:
		log.Warn("memory: budget exceeds the cgroup limit; using the cgroup limit",
			"budget", cfg.Budget, "cgroup_limit", cgroupLimit)
		s.Budget, s.BudgetSource = cgroupLimit, SourceCgroup
	case cfg.Budget > 0:
		s.Budget, s.BudgetSource = cfg.Budget, SourceConfig
	case cgroupLimit > 0:
		s.Budget, s.BudgetSource = cgroupLimit, SourceCgroup
	default:
		total, err := h.memTotal()
		if err != nil {
			return Settings{}, fmt.Errorf("%w: %w", ErrNoBudget, err)
		}
		s.Budget, s.BudgetSource = total, SourceMachine
	}

	if cfg.OffHeapOf != nil {
		s.OffHeap = cfg.OffHeapOf(s.Budget)
	}
	limit, err := memoryLimit(s.Budget, s.OffHeap)
	if err == nil && s.Budget < MinBudget {
		err = fmt.Errorf("%w: budget %d, minimum %d", ErrBudgetTooSmall, s.Budget, int64(MinBudget))
	}
	_, limitFromEnv := lookupEnv("GOMEMLIMIT")
	if err != nil && !limitFromEnv {
		return Settings{}, err
	}
	_, gogcFromEnv := lookupEnv("GOGC")
	_, procsFromEnv := lookupEnv("GOMAXPROCS")

	if limitFromEnv {
		s.MemoryLimit, s.MemoryLimitSource = debug.SetMemoryLimit(-1), SourceEnv
		log.Info("memory: GOMEMLIMIT set in the environment; the operator's value wins",
			"gomemlimit", s.MemoryLimit, "derived", limit)
	} else {
		debug.SetMemoryLimit(limit)
		s.MemoryLimit, s.MemoryLimitSource = limit, SourceConfig
	}
	if gogcFromEnv {
		s.GOGC, s.GOGCSource = currentGOGC(), SourceEnv
		log.Info("memory: GOGC set in the environment; the operator's value wins",
			"gogc", s.GOGC, "configured", cfg.GOGC)
	} else {
		debug.SetGCPercent(cfg.GOGC)
		s.GOGC, s.GOGCSource = cfg.GOGC, SourceConfig
	}
	s.GOMAXPROCS, s.GOMAXPROCSSource = runtime.GOMAXPROCS(0), SourceRuntime
	if procsFromEnv {
		s.GOMAXPROCSSource = SourceEnv
	}

	log.Info("memory: runtime sized",
		"budget", s.Budget, "budget_source", string(s.BudgetSource),
		"cgroup_limit", s.CgroupLimit, "offheap", s.OffHeap, "cgo", cgoEnabled,
		"gomemlimit", s.MemoryLimit, "gomemlimit_source", string(s.MemoryLimitSource),
		"gogc", s.GOGC, "gogc_source", string(s.GOGCSource),
		"gomaxprocs", s.GOMAXPROCS, "gomaxprocs_source", string(s.GOMAXPROCSSource))
	return s, nil
}

// currentGOGC reads the GC percentage without changing it; -1 means off.
func currentGOGC() int {
	sample := [1]metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(sample[:])
	return int(currentGOGCFrom(sample[0]))
}
