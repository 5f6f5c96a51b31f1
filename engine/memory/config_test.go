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
	f(4<<30, 0, 4<<30-(4<<30)/10, nil)
	f(1000<<20, 100<<20, 800<<20, nil)
	f(math.MaxInt64, 0, math.MaxInt64-math.MaxInt64/10, nil)
	// Small budgets keep MinProcessOverhead, not a tenth.
	f(96<<20, 10<<20, 54<<20, nil)
	f(64<<20, 0, 32<<20, nil)
	f(64<<20, 1, 0, ErrBudgetTooSmall)
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
	// At 4 GiB the heap shares leave enough GC headroom: the fractions as
	// documented, the hosts share at its cap.
	want := Shares{BlockCache: 256 * mib, MemTable: 32 * mib, Ring: 512 * mib, IdentityCache: 256 * mib,
		Hosts: 512 * mib, Overlay: 64 * mib, Upstream: 128 * mib, Intake: 128 * mib, Results: 256 * mib, Resync: 128 * mib,
		Consumers: 64 * mib, HTTP: 32 * mib, Jetstream: 64 * mib, TrimThreshold: 64 * mib}
	if got := SharesOf(4 << 30); got != want {
		t.Fatalf("SharesOf(4 GiB) = %+v, want %+v", got, want)
	}
	big := SharesOf(24 << 30)
	if big.BlockCache != 1<<30 || big.MemTable != 64*mib || big.Resync != 256*mib || big.Upstream != 256*mib {
		t.Fatalf("SharesOf(24 GiB) = %+v: cache, memtable, resync and upstream should hit their caps", big)
	}
	// Small budgets scale the heap shares down, never below their floors.
	s := SharesOf(96 * mib)
	if s.Ring >= 96*mib/8 || s.Ring < 2*mib || s.Jetstream != 2*mib || s.Consumers < mib/2 || s.Hosts < mib {
		t.Fatalf("SharesOf(96 MiB) = %+v", s)
	}
}

// TestSharesForSplitter: the splitter's shares hand what the relay alone
// uses to the consumers and leave the heap total as it was, so they fit
// wherever SharesOf does (TestSharesLedgerFits).
func TestSharesForSplitter(t *testing.T) {
	for _, b := range []int64{MinBudget, 96 << 20, 256 << 20, 1 << 30, 4 << 30, 24 << 30} {
		s := SharesOf(b)
		sp := s.ForSplitter()
		if sp.Heap() != s.Heap() || sp.Pebble() != s.Pebble() {
			t.Fatalf("budget %d: heap %d, Pebble %d; the relay's %d, %d", b, sp.Heap(), sp.Pebble(), s.Heap(), s.Pebble())
		}
		if sp.IdentityCache|sp.Hosts|sp.Overlay|sp.Upstream|sp.Results|sp.Resync != 0 {
			t.Fatalf("budget %d: the splitter keeps a share of the relay's: %+v", b, sp)
		}
		if sp.Ring != s.Ring || sp.Intake != s.Intake || sp.HTTP != s.HTTP || sp.TrimThreshold != s.TrimThreshold {
			t.Fatalf("budget %d: %+v changed a share the splitter uses as the relay does: %+v", b, sp, s)
		}
		if sp.Consumers <= s.Consumers || sp.Jetstream <= s.Jetstream {
			t.Fatalf("budget %d: consumers %d, Jetstream %d; the relay's %d, %d", b, sp.Consumers, sp.Jetstream, s.Consumers, s.Jetstream)
		}
		t.Logf("budget %d MiB: firehose consumers %d MiB (relay %d), Jetstream %d MiB (relay %d)",
			b>>20, sp.Consumers>>20, s.Consumers>>20, sp.Jetstream>>20, s.Jetstream>>20)
	}
}

// TestSharesLedgerFits is the budget's arithmetic: for every budget from
// MinBudget up, the shares with the process overhead, the fixed Go memory
// and their GC headroom add up to at most the budget, GOMEMLIMIT is
// acceptable, and no share shrinks as the budget grows. Raising a floor, a
// fraction or a fixed cost past what the budget holds fails here.
func TestSharesLedgerFits(t *testing.T) {
	var budgets []int64
	for b := int64(MinBudget); b <= 512<<20; b += 1 << 20 {
		budgets = append(budgets, b)
	}
	for b := int64(512 << 20); b <= 1<<40; b += b / 8 {
		budgets = append(budgets, b)
	}
	var prev Shares
	for _, b := range budgets {
		l := LedgerOf(b)
		if err := l.Check(); err != nil {
			t.Fatalf("budget %d: %v", b, err)
		}
		s := SharesOf(b)
		if _, err := memoryLimit(b, PebbleOffHeap(s.BlockCache, s.MemTable, MemTablesInMemory)); err != nil {
			t.Fatalf("budget %d: %v", b, err)
		}
		if s.Ring < prev.Ring || s.IdentityCache < prev.IdentityCache || s.Upstream < prev.Upstream ||
			s.Intake < prev.Intake || s.Results < prev.Results || s.Resync < prev.Resync ||
			s.Consumers < prev.Consumers || s.Jetstream < prev.Jetstream {
			t.Fatalf("budget %d: a share shrank: %+v after %+v", b, s, prev)
		}
		prev = s
	}
}

// TestMinBudget: MinBudget is the smallest budget that fits, to the MiB.
func TestMinBudget(t *testing.T) {
	b := int64(MinBudget - 1<<20)
	s := SharesOf(b)
	_, err := memoryLimit(b, s.Pebble())
	if err == nil && LedgerOf(b).Check() == nil {
		t.Fatalf("a budget of %d MiB fits too: lower MinBudget", b>>20)
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
