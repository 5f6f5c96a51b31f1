package label

import (
	"slices"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

type color uint8

const (
	colorNone color = iota
	colorRed
	colorBlue
	numColors
)

var colorNames = [numColors]string{colorNone: "none", colorRed: "red", colorBlue: "blue"}

func TestOf(t *testing.T) {
	for v, want := range map[color]string{colorNone: "none", colorBlue: "blue", numColors: Unknown, 200: Unknown} {
		if got := Of(colorNames[:], v); got != want {
			t.Errorf("Of(%d) = %q, want %q", v, got, want)
		}
	}
}

// TestCounters: every value from first on has its series at zero, under
// its label; the values before first have none.
func TestCounters(t *testing.T) {
	set := metrics.NewSet()
	cs := Counters(set, "relay_test_total", "color", colorNames[:], colorRed)
	if len(cs) != int(numColors) || cs[colorNone] != nil {
		t.Fatalf("%d counters, none's %v: want %d, nil", len(cs), cs[colorNone], numColors)
	}
	cs[colorBlue].Inc()
	names := set.ListMetricNames()
	slices.Sort(names)
	if want := []string{`relay_test_total{color="blue"}`, `relay_test_total{color="red"}`}; !slices.Equal(names, want) {
		t.Fatalf("series %q, want %q", names, want)
	}
	if got := cs[colorBlue].Get(); got != 1 {
		t.Fatalf("blue = %d, want 1", got)
	}
}
