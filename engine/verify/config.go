package verify

import "time"

// Mode selects how the sync-1.1 checks (spec §12.2 steps 10–13) are
// enforced.
type Mode uint8

const (
	// Strict drops a #commit whose ops do not invert to prevData or that
	// lacks prevData when the relay has state. The zero value.
	Strict Mode = iota
	// Lenient (spec §12.5, for legacy upstreams) passes such commits and
	// reports the failure in Verdict.Tolerated so the caller can count it.
	Lenient
)

// String returns "strict" or "lenient".
func (m Mode) String() string {
	if m == Lenient {
		return "lenient"
	}
	return "strict"
}

// Defaults used where a Limits or Config field is zero (spec §11, §18).
const (
	DefaultMaxCommitBlocksBytes = 2_000_000
	DefaultMaxSyncBlocksBytes   = 10_000
	DefaultMaxOps               = 200
	DefaultMaxRecordBytes       = 1_000_000
	DefaultFutureRevTolerance   = 5 * time.Minute
)

// Limits bound what a commit or sync may carry. A zero field means its
// default, never "unlimited".
type Limits struct {
	// MaxCommitBlocksBytes bounds #commit.blocks (CAR slice) in bytes;
	// default 2,000,000. Exceeding it drops with ReasonBlocksTooLarge.
	MaxCommitBlocksBytes int
	// MaxSyncBlocksBytes bounds #sync.blocks in bytes; default 10,000 (the
	// lexicon's maxLength). Exceeding it drops with ReasonBlocksTooLarge.
	MaxSyncBlocksBytes int
	// MaxOps bounds #commit.ops; default 200 (ReasonTooManyOps).
	MaxOps int
	// MaxRecordBytes bounds any one block of the CAR, records included;
	// default 1,000,000 (ReasonBlockTooLarge).
	MaxRecordBytes int
}

// Config configures a Validator. Zero fields take the documented defaults.
type Config struct {
	// Mode is Strict (default) or Lenient.
	Mode Mode
	// FutureRevTolerance is how far past Now a rev's timestamp may lie
	// before the event is dropped with ReasonFutureRev; default 5 min.
	FutureRevTolerance time.Duration
	// Now is the clock for the future-rev check; nil means time.Now.
	Now func() time.Time
	// Limits bound sizes and counts.
	Limits Limits
}

// withDefaults returns c with every zero field replaced by its default.
func (c Config) withDefaults() Config {
	if c.FutureRevTolerance <= 0 {
		c.FutureRevTolerance = DefaultFutureRevTolerance
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	l := &c.Limits
	if l.MaxCommitBlocksBytes <= 0 {
		l.MaxCommitBlocksBytes = DefaultMaxCommitBlocksBytes
	}
	if l.MaxSyncBlocksBytes <= 0 {
		l.MaxSyncBlocksBytes = DefaultMaxSyncBlocksBytes
	}
	if l.MaxOps <= 0 {
		l.MaxOps = DefaultMaxOps
	}
	if l.MaxRecordBytes <= 0 {
		l.MaxRecordBytes = DefaultMaxRecordBytes
	}
	return c
}
