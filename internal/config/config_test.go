package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestDefault: only the zero value is replaced; a negative or other chosen
// value is kept for validation to judge.
func TestDefault(t *testing.T) {
	for _, tc := range []struct{ in, want int }{{0, 7}, {3, 3}, {-1, -1}} {
		v := tc.in
		Default(&v, 7)
		if v != tc.want {
			t.Errorf("Default(%d, 7) = %d, want %d", tc.in, v, tc.want)
		}
	}
	var d time.Duration
	Default(&d, time.Second)
	Default(&d, time.Minute)
	if d != time.Second {
		t.Errorf("duration = %v, want 1s (set once, then kept)", d)
	}
	s := ""
	Default(&s, "relay")
	if s != "relay" {
		t.Errorf("string = %q, want relay", s)
	}
}

var errKind = errors.New("test: invalid config")

// TestProblems: nothing recorded is no error; otherwise every problem is
// named in one error that wraps the kind.
func TestProblems(t *testing.T) {
	var p Problems
	NotNegative(&p, "Zero", 0)
	NotNegative(&p, "Timeout", time.Second)
	if err := p.Err(errKind); err != nil {
		t.Fatalf("no problem: err = %v", err)
	}
	NotNegative(&p, "QueueBytes", -1)
	NotNegative(&p, "Timeout", -time.Second)
	p.Addf("Sink is required")
	err := p.Err(errKind)
	if !errors.Is(err, errKind) {
		t.Fatalf("err = %v, want it to wrap %v", err, errKind)
	}
	for _, want := range []string{"QueueBytes = -1 must not be negative", "Timeout = -1s must not be negative", "Sink is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, missing %q", err, want)
		}
	}
	if err := p.Err(nil); err == nil || errors.Is(err, errKind) || !strings.Contains(err.Error(), "Sink is required") {
		t.Errorf("Err(nil) = %v, want the problems alone", err)
	}
}
