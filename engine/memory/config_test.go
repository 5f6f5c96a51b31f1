package memory

import (
	"errors"
	"math"
	"reflect"
	"testing"
	"time"
)

func TestParseBytes(t *testing.T) {
	f := func(in string, want int64, wantErr error) {
		t.Helper()
		got, err := ParseBytes(in)
		if !errors.Is(err, wantErr) || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d, %v", in, got, err, want, wantErr)
		}
	}
	f("0", 0, nil)
	f("1048576", 1<<20, nil)
	f("4GiB", 4<<30, nil)
	f("1GiB", 1<<30, nil)
	f(" 512 MiB ", 512<<20, nil)
	f("64KiB", 64<<10, nil)
	f("2TiB", 2<<40, nil)
	f("300MB", 300e6, nil)
	f("5KB", 5000, nil)
	f("4G", 4<<30, nil)
	f("4608M", 4608<<20, nil)
	f("1.5GiB", 3<<29, nil)
	f("10B", 10, nil)
	f("9223372036854775807", math.MaxInt64, nil)

	f("", 0, ErrSizeSyntax)
	f("GiB", 0, ErrSizeSyntax)
	f("-1GiB", 0, ErrSizeSyntax)
	f("1e9", 0, ErrSizeSyntax)
	f("4 gib", 0, ErrSizeUnit)
	f("4XB", 0, ErrSizeUnit)
	f("1.2.3", 0, ErrSizeSyntax)
	f(".", 0, ErrSizeSyntax)
	f("9223372036854775808", 0, ErrSizeRange)
	f("8388608TiB", 0, ErrSizeRange)
	f("8388608.0TiB", 0, ErrSizeRange)
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	bad := Config{Budget: -1, OffHeap: -1, GOGC: -2, TrimInterval: -time.Second, TrimThreshold: -1}
	err := bad.Validate()
	for _, want := range []error{ErrNegativeBudget, ErrNegativeOffHeap, ErrBadGOGC, ErrNegativeTrimInterval, ErrNegativeTrimThreshold} {
		if !errors.Is(err, want) {
			t.Errorf("Validate(%+v) = %v, missing %v", bad, err, want)
		}
	}
}

func TestConfigWithDefaults(t *testing.T) {
	got := Config{}.WithDefaults()
	want := Config{GOGC: DefaultGOGC, TrimInterval: DefaultTrimInterval, TrimThreshold: DefaultTrimThreshold}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("WithDefaults() = %+v, want %+v", got, want)
	}
	off := Config{GOGC: -1}.WithDefaults()
	if off.GOGC != -1 {
		t.Fatalf("GOGC -1 became %d", off.GOGC)
	}
}

func TestMemoryLimit(t *testing.T) {
	f := func(budget, offHeap, want int64, wantErr error) {
		t.Helper()
		got, err := memoryLimit(budget, offHeap)
		if !errors.Is(err, wantErr) || got != want {
			t.Errorf("memoryLimit(%d, %d) = %d, %v; want %d, %v", budget, offHeap, got, err, want, wantErr)
		}
	}
	f(4<<30, 0, 4<<30/10*9+(4<<30)%10*9/10, nil)
	f(1000<<20, 100<<20, 800<<20, nil)
	f(math.MaxInt64, 0, math.MaxInt64/100*90+math.MaxInt64%100*90/100, nil)
	f(64<<20, 0, 0, ErrBudgetTooSmall)
	f(1<<30, 1<<30, 0, ErrBudgetTooSmall)
}

func TestPebbleOffHeap(t *testing.T) {
	got := PebbleOffHeap(256<<20, 64<<20, 4)
	want := int64(0)
	if cgoEnabled {
		want = 512 << 20
	}
	if got != want {
		t.Fatalf("PebbleOffHeap = %d, want %d (cgo %t)", got, want, cgoEnabled)
	}
	if cgoEnabled {
		if got := PebbleOffHeap(-5, math.MaxInt64, 2); got != math.MaxInt64 {
			t.Fatalf("overflow not saturated: %d", got)
		}
		if got := PebbleOffHeap(1<<20, 0, 0); got != 1<<20 {
			t.Fatalf("cache only = %d", got)
		}
	}
}

func TestSharesOf(t *testing.T) {
	const mib = 1 << 20
	small := SharesOf(512 * mib)
	want := Shares{BlockCache: 32 * mib, MemTable: 4 * mib, Ring: 128 * mib, IdentityCache: 64 * mib,
		Intake: 32 * mib, Results: 32 * mib, Resync: 16 * mib, TrimThreshold: 8 * mib}
	if small != want {
		t.Fatalf("SharesOf(512 MiB) = %+v, want %+v", small, want)
	}
	// The shares, with every memtable Pebble may hold, leave a quarter of the
	// budget to GC headroom and the runtime, from tiny budgets to huge ones.
	for _, b := range []int64{256 * mib, 512 * mib, 4 << 30, 24 << 30, 256 << 30} {
		s := SharesOf(b)
		sum := s.BlockCache + MemTablesInMemory*s.MemTable + s.Ring + s.IdentityCache + s.Intake + s.Results + s.Resync
		if sum > b*3/4 {
			t.Errorf("budget %d: shares sum to %d, more than 3/4", b, sum)
		}
	}
	big := SharesOf(24 << 30)
	if big.BlockCache != 1<<30 || big.MemTable != 64*mib || big.Resync != 256*mib {
		t.Fatalf("SharesOf(24 GiB) = %+v: cache, memtable and resync should hit their caps", big)
	}
	if tiny := SharesOf(64 * mib); tiny.Resync != 8*mib {
		t.Fatalf("SharesOf(64 MiB).Resync = %d, want the 8 MiB floor", tiny.Resync)
	}
}

func TestApplyOffHeapOf(t *testing.T) {
	keepRuntime(t)
	h := fakeHost(t, map[string]string{"/proc/meminfo": "MemTotal: 1048576 kB\n"})
	var seen int64
	s, err := apply(Config{OffHeap: 1, OffHeapOf: func(b int64) int64 { seen = b; return 100 << 20 }},
		nil, env(nil), h)
	if err != nil {
		t.Fatal(err)
	}
	if seen != 1<<30 || s.OffHeap != 100<<20 {
		t.Fatalf("OffHeapOf saw budget %d, OffHeap %d; want 1 GiB and 100 MiB", seen, s.OffHeap)
	}
	if want, _ := memoryLimit(1<<30, 100<<20); s.MemoryLimit != want {
		t.Fatalf("MemoryLimit %d, want %d", s.MemoryLimit, want)
	}
}
