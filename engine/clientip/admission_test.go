package clientip

import (
	"net/netip"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

// TestAdmission: the total cap is checked before the per-client one, a
// released slot can be taken again, and keys that hold nothing are
// forgotten.
func TestAdmission(t *testing.T) {
	var a Admission
	x, y := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8::")
	f := func(key netip.Addr, want Refusal) {
		t.Helper()
		if got := a.Acquire(key, 3, 2); got != want {
			t.Fatalf("Acquire(%v) = %v, want %v", key, got, want)
		}
	}
	f(x, RefuseNone)
	f(x, RefuseNone)
	f(x, RefusePerIP)
	f(y, RefuseNone)
	f(y, RefuseGlobal)
	if n := a.Held(); n != 3 {
		t.Fatalf("Held = %d, want 3", n)
	}
	a.Release(x)
	f(x, RefuseNone)
	a.Release(x)
	a.Release(x)
	a.Release(y)
	if n, keys := a.Held(), len(a.perIP); n != 0 || keys != 0 {
		t.Fatalf("after every release: Held = %d, %d keys remembered; want 0, 0", n, keys)
	}
}

func TestRefusalCounters(t *testing.T) {
	set := metrics.NewSet()
	cs := RefusalCounters(set, "relay_test_refused_total", RefusePerIP)
	if cs[RefuseGlobal] != nil || cs[RefusePerIP] == nil {
		t.Fatalf("counters %v: want only per_ip", cs)
	}
	if names := set.ListMetricNames(); len(names) != 1 || names[0] != `relay_test_refused_total{reason="per_ip"}` {
		t.Fatalf("series %q", names)
	}
	if s := RefusePerIP.String(); s != "per_ip" {
		t.Fatalf("RefusePerIP.String() = %q", s)
	}
}
