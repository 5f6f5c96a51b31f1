package verify

import (
	"regexp"
	"testing"
)

// Reason labels are metric labels: non-empty snake_case, unique, and
// AllReasons covers every value but ReasonNone.
func TestReasonLabels(t *testing.T) {
	label := regexp.MustCompile(`^[a-z]+(_[a-z0-9]+)*$`)
	seen := map[string]Reason{}
	all := AllReasons()
	if len(all) != int(numReasons)-1 || all[0] != ReasonNone+1 {
		t.Fatalf("AllReasons has %d entries starting at %d", len(all), all[0])
	}
	for _, r := range all {
		s := r.String()
		if !label.MatchString(s) || s == "none" || s == "unknown" {
			t.Errorf("reason %d label %q", r, s)
		}
		if prev, dup := seen[s]; dup {
			t.Errorf("label %q used by %d and %d", s, prev, r)
		}
		seen[s] = r
	}
	if ReasonNone.String() != "none" || numReasons.String() != "unknown" {
		t.Errorf("none/unknown labels: %q %q", ReasonNone, numReasons)
	}
	for want, got := range map[string]string{
		"accept": Accept.String(), "drop": Drop.String(), "ignore": Ignore.String(), "none": Action(0).String(),
		"since_mismatch": BreakSince.String(), "prevdata_mismatch": BreakPrevData.String(), "strict": Strict.String(),
		"lenient": Lenient.String(),
	} {
		if want != got {
			t.Errorf("label %q, want %q", got, want)
		}
	}
}

// Zero Config fields take the documented defaults.
func TestConfigDefaults(t *testing.T) {
	c := New(Config{}).Config()
	if c.Mode != Strict || c.FutureRevTolerance != DefaultFutureRevTolerance || c.Now == nil ||
		c.Limits != (Limits{DefaultMaxCommitBlocksBytes, DefaultMaxSyncBlocksBytes, DefaultMaxOps, DefaultMaxRecordBytes}) {
		t.Fatalf("defaults: %+v", c)
	}
}
