package defaults

import (
	"testing"
	"time"
)

// TestSet: only the zero value is replaced; a negative or other chosen
// value is kept for Validate to judge.
func TestSet(t *testing.T) {
	for _, tc := range []struct{ in, want int }{{0, 7}, {3, 3}, {-1, -1}} {
		v := tc.in
		Set(&v, 7)
		if v != tc.want {
			t.Errorf("Set(%d, 7) = %d, want %d", tc.in, v, tc.want)
		}
	}
	var d time.Duration
	Set(&d, time.Second)
	Set(&d, time.Minute)
	if d != time.Second {
		t.Errorf("duration = %v, want 1s (set once, then kept)", d)
	}
	s := ""
	Set(&s, "relay")
	if s != "relay" {
		t.Errorf("string = %q, want relay", s)
	}
}
