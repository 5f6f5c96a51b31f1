package memory

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/atrelay/relay/internal/config"
)

// Defaults applied by [Config.WithDefaults] to zero fields.
const (
	// DefaultGOGC is the GC target percentage used when Config.GOGC is 0.
	// 25, not Go's 100: the heap then grows a quarter past the live heap
	// between collections instead of doubling, so each trim returns (and
	// the heap faults back in) a quarter as much. Measured at production
	// scale (PERF.md, Production scale, "GOGC 25"): peak RSS 444–458 MiB
	// instead of 628–630, the same CPU (GC's extra share paid for by
	// cheaper trims), delivery p99 445–587 ms instead of 1,107–1,174; at
	// full speed with small budgets, peak RSS 11–18 MiB lower and no
	// fewer events a second.
	DefaultGOGC = 25
	// DefaultTrimInterval is the minimum spacing between two trims. Each
	// trim is a forced GC; at most one every 10 s, and in practice one after
	// each natural collection (that is when idle heap jumps), it keeps RSS
	// near the heap in use for about twice the GC CPU. Measured in PERF.md.
	DefaultTrimInterval = 10 * time.Second
	// DefaultTrimThreshold is the idle, unreleased heap above which a trim
	// runs. The runtime's background scavenger already returns memory slowly;
	// the trimmer only needs to catch large spikes, so this is well above the
	// few MiB of idle heap a busy steady state holds.
	DefaultTrimThreshold = 64 << 20
)

// MinMemoryLimit is the smallest GOMEMLIMIT Apply accepts, reached at a
// budget of [MinBudget]. The live heap of a relay at that budget is about
// 20 MiB of tables and caches plus its shares, so the collector runs every
// few MiB allocated: at full speed it takes a large part of the CPU (PERF.md,
// Production scale, measures it at 96 MiB). A smaller budget is a
// configuration mistake, reported as [ErrBudgetTooSmall].
const MinMemoryLimit = 32 << 20

// MinBudget is the smallest budget Apply accepts: the smallest with room
// for the relay's shares at their floors beside MinProcessOverhead and
// FixedGoBytes (the shares' ledger fits) and a GOMEMLIMIT of at least
// MinMemoryLimit (tested). PERF.md, Production scale, measures it.
const MinBudget = 84 << 20

// Errors returned by [Config.Validate], [Apply] and [ParseBytes].
var (
	// ErrNegativeBudget: Config.Budget is below zero.
	ErrNegativeBudget = errors.New("memory: budget is negative")
	// ErrNegativeOffHeap: Config.OffHeap is below zero.
	ErrNegativeOffHeap = errors.New("memory: off-heap reservation is negative")
	// ErrBadGOGC: Config.GOGC is below -1.
	ErrBadGOGC = errors.New("memory: GOGC must be -1 (off), 0 (default) or positive")
	// ErrNegativeTrimInterval: Config.TrimInterval is below zero.
	ErrNegativeTrimInterval = errors.New("memory: trim interval is negative")
	// ErrNegativeTrimThreshold: Config.TrimThreshold is below zero.
	ErrNegativeTrimThreshold = errors.New("memory: trim threshold is negative")
	// ErrBudgetTooSmall: the budget is below MinBudget, or leaves less than
	// MinMemoryLimit for Go.
	ErrBudgetTooSmall = errors.New("memory: budget leaves too little for the Go heap")
	// ErrNoBudget: Budget is zero and neither a cgroup limit nor
	// /proc/meminfo could supply one.
	ErrNoBudget = errors.New("memory: no budget configured and none found in cgroup or /proc/meminfo")
	// ErrSizeSyntax: a size string is not a number with an optional unit.
	ErrSizeSyntax = errors.New("memory: malformed size")
	// ErrSizeUnit: a size string has an unknown unit.
	ErrSizeUnit = errors.New("memory: unknown size unit")
	// ErrSizeRange: a size string does not fit in an int64 byte count.
	ErrSizeRange = errors.New("memory: size out of range")
)

// Config is the memory manager's configuration. The zero value is valid and
// means "derive everything"; [Config.WithDefaults] documents each default.
// A Config is a plain value, copied freely.
type Config struct {
	// Budget is the memory the whole process may use, in bytes
	// (env RELAY_MEMORY_BUDGET). 0: the cgroup limit, else MemTotal.
	Budget int64
	// OffHeap is the part of Budget certain to be allocated outside the Go
	// heap, in bytes; it is subtracted from GOMEMLIMIT. Set it with
	// PebbleOffHeap. 0: nothing reserved.
	OffHeap int64
	// OffHeapOf, when set, replaces OffHeap: Apply calls it with the budget
	// it resolved (which may come from the cgroup or the machine), so the
	// reservation can be a share of it, as [Shares.OffHeap] is.
	OffHeapOf func(budget int64) int64
	// GOGC is the GC target percentage (env RELAY_GOGC). 0: DefaultGOGC;
	// -1: proportional GC off, only GOMEMLIMIT triggers collections.
	GOGC int
	// TrimInterval is the minimum time between two trims
	// (env RELAY_TRIM_INTERVAL). 0: DefaultTrimInterval.
	TrimInterval time.Duration
	// TrimThreshold is the idle, unreleased heap in bytes above which the
	// trimmer returns memory to the OS. 0: DefaultTrimThreshold.
	TrimThreshold int64
}

// WithDefaults returns c with every zero field replaced by its default.
// Budget stays zero: it is resolved by Apply from the cgroup or the machine.
func (c Config) WithDefaults() Config {
	config.Default(&c.GOGC, DefaultGOGC)
	config.Default(&c.TrimInterval, DefaultTrimInterval)
	config.Default(&c.TrimThreshold, DefaultTrimThreshold)
	return c
}

// Validate reports every out-of-range field of c, joined into one error.
func (c Config) Validate() error {
	var p config.Problems
	if c.Budget < 0 {
		p.Addf("%w: %d", ErrNegativeBudget, c.Budget)
	}
	if c.OffHeap < 0 {
		p.Addf("%w: %d", ErrNegativeOffHeap, c.OffHeap)
	}
	if c.GOGC < -1 {
		p.Addf("%w: %d", ErrBadGOGC, c.GOGC)
	}
	if c.TrimInterval < 0 {
		p.Addf("%w: %v", ErrNegativeTrimInterval, c.TrimInterval)
	}
	if c.TrimThreshold < 0 {
		p.Addf("%w: %d", ErrNegativeTrimThreshold, c.TrimThreshold)
	}
	return p.Err(nil)
}

// memoryLimit is the GOMEMLIMIT for a budget and off-heap reservation: the
// budget less ProcessOverhead and offHeap.
func memoryLimit(budget, offHeap int64) (int64, error) {
	limit := budget - ProcessOverhead(budget) - offHeap
	if limit < MinMemoryLimit {
		return 0, fmt.Errorf("%w: budget %d, off-heap %d gives GOMEMLIMIT %d, minimum %d",
			ErrBudgetTooSmall, budget, offHeap, limit, int64(MinMemoryLimit))
	}
	return limit, nil
}

// PebbleOffHeap returns the bytes Pebble will allocate outside the Go heap in
// this build: its block cache plus memTableSize × memTableStopWritesThreshold
// of memtable arenas when built with cgo, where Pebble's internal/manual uses
// C.calloc; 0 without cgo, where the same buffers are Go slices and already
// counted by GOMEMLIMIT. Negative inputs count as zero.
func PebbleOffHeap(cacheBytes, memTableSize int64, memTableStopWritesThreshold int) int64 {
	if !cgoEnabled {
		return 0
	}
	total := max(cacheBytes, 0)
	if memTableSize > 0 && memTableStopWritesThreshold > 0 {
		arenas := int64(memTableStopWritesThreshold)
		if memTableSize > (math.MaxInt64-total)/arenas {
			return math.MaxInt64
		}
		total += memTableSize * arenas
	}
	return total
}

// ParseBytes parses a byte count such as "4GiB", "512MiB", "1.5G", "300MB"
// or "1048576". IEC units (KiB…TiB) and systemd's bare K/M/G/T are powers of
// 1024; KB…TB are powers of 1000; B or no unit means bytes. The result is
// rounded down to whole bytes and must fit in an int64.
func ParseBytes(s string) (int64, error) {
	// IEC units are powers of 1024, SI units powers of 1000; systemd's bare
	// K/M/G/T are powers of 1024. Longer suffixes come first so "KiB" is not
	// read as "B".
	units := [...]struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
		{"B", 1},
	}
	num := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.mult
			break
		}
	}
	if num == "" {
		return 0, fmt.Errorf("%w: %q", ErrSizeSyntax, s)
	}
	if c := num[len(num)-1] | 0x20; c >= 'a' && c <= 'z' {
		return 0, fmt.Errorf("%w: %q", ErrSizeUnit, s)
	}
	for i := 0; i < len(num); i++ {
		if c := num[i]; (c < '0' || c > '9') && c != '.' {
			return 0, fmt.Errorf("%w: %q", ErrSizeSyntax, s)
		}
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %q", ErrSizeRange, s)
		}
		if n > math.MaxInt64/mult {
			return 0, fmt.Errorf("%w: %q", ErrSizeRange, s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrSizeSyntax, s)
	}
	v := f * float64(mult)
	// 2^63 is exactly representable; anything at or above it overflows int64.
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("%w: %q", ErrSizeRange, s)
	}
	return int64(v), nil
}
