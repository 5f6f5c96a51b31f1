package syntax

import (
	"sync"
	"time"
)

// TID layout constants (spec §2.6).
const (
	// TIDLen is the length of every TID in bytes.
	TIDLen = 13
	// TIDAlphabet is the base32-sortable alphabet in value order.
	TIDAlphabet = "234567abcdefghijklmnopqrstuvwxyz"
	// MaxTIDClockID is the largest clock id (10 bits).
	MaxTIDClockID = 1<<10 - 1
	// MaxTIDMicros is the largest timestamp a TID with the top bit clear
	// holds: 53 bits of microseconds since the Unix epoch (year 2255).
	MaxTIDMicros = 1<<53 - 1
)

// TID is a syntactically valid timestamp identifier. Two valid TIDs compare
// as strings exactly as their integers compare.
type TID string

// ParseTID validates s as TID syntax and returns it typed.
func ParseTID(s string) (TID, error) {
	if _, err := decodeTID(s); err != nil {
		return "", err
	}
	return TID(s), nil
}

// CheckTID validates b as TID syntax:
// ^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$. The regex,
// not the spec's prose, decides the first character (spec §17.15). It does
// not allocate.
func CheckTID(b []byte) error {
	_, err := decodeTID(b)
	return err
}

// DecodeTID validates b as a TID and returns its integer value. It does not
// allocate.
func DecodeTID(b []byte) (uint64, error) { return decodeTID(b) }

// CompareTID compares two TIDs already known to be valid and returns -1, 0
// or +1, which is also the order of their integer values and timestamps.
func CompareTID(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// MakeTIDInt packs a timestamp and a clock id into a TID integer. Times
// before the epoch clamp to 0 and times after year 2255 to MaxTIDMicros;
// the clock id keeps its low 10 bits.
func MakeTIDInt(t time.Time, clockID uint) uint64 {
	us := t.UnixMicro()
	switch {
	case us < 0:
		us = 0
	case us > MaxTIDMicros:
		us = MaxTIDMicros
	}
	return uint64(us)<<10 | uint64(clockID&MaxTIDClockID)
}

// AppendTID appends the 13-character encoding of v to dst.
func AppendTID(dst []byte, v uint64) []byte {
	var buf [TIDLen]byte
	for i := TIDLen - 1; i >= 0; i-- {
		buf[i] = TIDAlphabet[v&31]
		v >>= 5
	}
	return append(dst, buf[:]...)
}

// TIDFromInt returns the TID encoding v. A v with the top bit set encodes
// with a first character beyond 'b' and is still valid TID syntax.
func TIDFromInt(v uint64) TID {
	var buf [TIDLen]byte
	return TID(AppendTID(buf[:0], v))
}

// NewTID returns the TID for timestamp t and clock id clockID (see
// MakeTIDInt for clamping).
func NewTID(t time.Time, clockID uint) TID {
	return TIDFromInt(MakeTIDInt(t, clockID))
}

// Integer returns the integer value of t, or 0 if t is not valid.
func (t TID) Integer() uint64 {
	v, _ := decodeTID(t)
	return v
}

// Time returns the timestamp of t in UTC (microsecond precision), or the
// zero time if t is not valid.
func (t TID) Time() time.Time {
	v, err := decodeTID(t)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMicro(int64(v >> 10)).UTC()
}

// ClockID returns the low 10 bits of t, or 0 if t is not valid.
func (t TID) ClockID() uint {
	return uint(t.Integer() & MaxTIDClockID)
}

// Compare returns -1, 0 or +1 as t sorts before, equal to or after u.
func (t TID) Compare(u TID) int {
	switch {
	case t < u:
		return -1
	case t > u:
		return 1
	}
	return 0
}

// String returns t as a plain string.
func (t TID) String() string { return string(t) }

// tidValue returns the alphabet index of c, or -1.
func tidValue(c byte) int {
	switch {
	case c >= '2' && c <= '7':
		return int(c - '2')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 6
	}
	return -1
}

func decodeTID[T text](s T) (uint64, error) {
	if len(s) != TIDLen {
		return 0, ErrTIDLength
	}
	var v uint64
	for i := 0; i < TIDLen; i++ {
		d := tidValue(s[i])
		if d < 0 {
			return 0, ErrTIDChar
		}
		v = v<<5 | uint64(d)
	}
	if d := tidValue(s[0]); d > 15 {
		return 0, ErrTIDFirstChar
	}
	return v, nil
}

// TIDClock issues strictly increasing TIDs for one clock id, for revs and
// record keys written by the relay, its store and bench tools. It is safe
// for concurrent use.
type TIDClock struct {
	// Static after NewTIDClock.
	clockID uint
	now     func() time.Time

	mu struct {
		sync.Mutex
		last uint64 // last integer issued; 0 before the first Next
	}
}

// NewTIDClock returns a clock stamping clockID (low 10 bits) into every
// TID. now supplies the time; nil means time.Now.
func NewTIDClock(clockID uint, now func() time.Time) *TIDClock {
	if now == nil {
		now = time.Now
	}
	return &TIDClock{clockID: clockID & MaxTIDClockID, now: now}
}

// NextInt returns a TID integer greater than every one this clock issued
// before. When the wall clock stalls or steps back, the timestamp advances
// by one microsecond past the last one instead.
func (c *TIDClock) NextInt() uint64 {
	v := MakeTIDInt(c.now(), c.clockID)
	c.mu.Lock()
	if v <= c.mu.last {
		v = (c.mu.last>>10+1)<<10 | uint64(c.clockID)
	}
	c.mu.last = v
	c.mu.Unlock()
	return v
}

// Next returns a TID greater than every one this clock issued before.
func (c *TIDClock) Next() TID { return TIDFromInt(c.NextInt()) }

// AppendNext appends the next TID to dst without allocating.
func (c *TIDClock) AppendNext(dst []byte) []byte { return AppendTID(dst, c.NextInt()) }
