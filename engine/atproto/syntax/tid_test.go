package syntax

import (
	"sync"
	"testing"
	"time"
)

func TestTIDWorkedExample(t *testing.T) {
	// Spec digest §2.6, marked verified there; the package doc repeats it.
	const s = "3lmxrbvasth2t"
	v, err := DecodeTID([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	if v != 0x18CBB73ECD8CB419 {
		t.Fatalf("DecodeTID(%s) = %#x", s, v)
	}
	tid := TID(s)
	want := time.Date(2025, 4, 16, 23, 40, 33, 541933000, time.UTC)
	if got := tid.Time(); !got.Equal(want) {
		t.Fatalf("Time() = %v, want %v", got, want)
	}
	if got := tid.ClockID(); got != 25 {
		t.Fatalf("ClockID() = %d, want 25", got)
	}
	if got := v >> 10; got != 1744846833541933 {
		t.Fatalf("micros = %d", got)
	}
	if got := NewTID(want, 25); got != tid {
		t.Fatalf("NewTID = %s, want %s", got, tid)
	}
}

func TestTIDRoundTripAndOrder(t *testing.T) {
	f := func(v uint64) {
		t.Helper()
		s := AppendTID(nil, v)
		got, err := DecodeTID(s)
		if err != nil || got != v {
			t.Fatalf("DecodeTID(AppendTID(%#x)=%s) = %#x, %v", v, s, got, err)
		}
	}
	for _, v := range []uint64{0, 1, 31, 32, 1<<10 - 1, 1 << 53, 1<<63 - 1, 1 << 63, 1<<64 - 1} {
		f(v)
	}
	pairs := [][2]uint64{{0, 1}, {31, 32}, {1<<63 - 1, 1 << 63}, {0x18CBB73ECD8CB419, 0x18CBB73ECD8CB41A}}
	for _, p := range pairs {
		a, b := AppendTID(nil, p[0]), AppendTID(nil, p[1])
		if CompareTID(a, b) != -1 || CompareTID(b, a) != 1 || CompareTID(a, a) != 0 {
			t.Fatalf("CompareTID(%s, %s) disagrees with %#x < %#x", a, b, p[0], p[1])
		}
		if TID(a).Compare(TID(b)) != -1 {
			t.Fatalf("TID.Compare(%s, %s) != -1", a, b)
		}
	}
}

func TestTIDErrors(t *testing.T) {
	f := func(s string, want error) {
		t.Helper()
		if err := CheckTID([]byte(s)); err != want {
			t.Fatalf("CheckTID(%q) = %v, want %v", s, err, want)
		}
	}
	f("3jzfcijpj2z2", ErrTIDLength)
	f("3jzfcijpj2z2aa", ErrTIDLength)
	f("3jzfcijpj2z21", ErrTIDChar)
	f("3JZFCIJPJ2Z2A", ErrTIDChar)
	f("kjzfcijpj2z2a", ErrTIDFirstChar)
	f("j222222222222", nil)
	if TID("bad").Integer() != 0 || !TID("bad").Time().IsZero() {
		t.Fatal("invalid TID must decode to zero values")
	}
}

func TestMakeTIDIntClamps(t *testing.T) {
	if v := MakeTIDInt(time.Unix(-5, 0), 7); v != 7 {
		t.Fatalf("pre-epoch = %#x, want 7", v)
	}
	if v := MakeTIDInt(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), 2000); v != MaxTIDMicros<<10|(2000&MaxTIDClockID) {
		t.Fatalf("post-2255 = %#x", v)
	}
}

func TestTIDClockMonotonic(t *testing.T) {
	fixed := time.Date(2025, 4, 16, 23, 40, 33, 0, time.UTC)
	steps := []time.Time{fixed, fixed, fixed.Add(-time.Hour), fixed.Add(time.Microsecond), fixed.Add(time.Second)}
	i := 0
	c := NewTIDClock(25, func() time.Time { t := steps[i%len(steps)]; i++; return t })
	var prev TID
	for range steps {
		next := c.Next()
		if _, err := ParseTID(string(next)); err != nil {
			t.Fatalf("Next() = %q: %v", next, err)
		}
		if next.ClockID() != 25 {
			t.Fatalf("Next() clock id = %d", next.ClockID())
		}
		if prev != "" && next <= prev {
			t.Fatalf("Next() = %s after %s", next, prev)
		}
		prev = next
	}
	if got := prev.Time(); !got.Equal(fixed.Add(time.Second)) {
		t.Fatalf("clock did not return to the wall clock: %v", got)
	}
}

func TestTIDClockConcurrent(t *testing.T) {
	c := NewTIDClock(1, func() time.Time { return time.Unix(1700000000, 0) })
	const goroutines, each = 4, 500
	out := make([][]uint64, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				out[g] = append(out[g], c.NextInt())
			}
		}()
	}
	wg.Wait()
	seen := make(map[uint64]bool)
	for _, vs := range out {
		for i, v := range vs {
			if seen[v] {
				t.Fatalf("duplicate TID %#x", v)
			}
			seen[v] = true
			if i > 0 && v <= vs[i-1] {
				t.Fatalf("not increasing within a goroutine")
			}
		}
	}
}
