package syntax

import "time"

// MaxDatetimeLen is the length limit of a datetime in bytes.
const MaxDatetimeLen = 64

// Datetime is a datetime string that passed both the syntax check and the
// semantic parse. It keeps the producer's exact text (no normalization).
type Datetime string

// ParseDatetimeString validates s fully (syntax and semantics) and returns it
// typed.
func ParseDatetimeString(s string) (Datetime, error) {
	if _, err := parseDatetime(s); err != nil {
		return "", err
	}
	return Datetime(s), nil
}

// CheckDatetimeSyntax validates the shape of b, the atproto profile of RFC
// 3339: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM), upper-case 'T' and 'Z',
// whole seconds, one or more fraction digits if a '.' is present, a
// mandatory zone other than -00:00, at most 64 bytes. Field values are not
// range-checked; ParseDatetime does that. It does not allocate.
func CheckDatetimeSyntax(b []byte) error { return checkDatetimeSyntax(b) }

// ParseDatetime validates b fully and returns the instant in UTC.
// Fractional digits past nanoseconds are truncated. Besides the syntax it
// rejects out-of-range fields (including second 60: leap seconds are not
// representable, as in time.Parse) and instants before year 0000 in UTC.
// It does not allocate.
func ParseDatetime(b []byte) (time.Time, error) { return parseDatetime(b) }

// Time returns the instant of d in UTC, or the zero time if d is not valid.
func (d Datetime) Time() time.Time {
	t, _ := parseDatetime(d)
	return t
}

// String returns d as a plain string.
func (d Datetime) String() string { return string(d) }

// AppendDatetime appends t in the form the relay produces: UTC, upper-case
// 'Z', millisecond precision, e.g. 2025-04-16T23:40:33.895Z.
func AppendDatetime(dst []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z")
}

// digitsAt reports whether s[i:i+n] are all ASCII digits; the caller has
// checked the bounds.
func digitsAt[T text](s T, i, n int) bool {
	for j := i; j < i+n; j++ {
		if !isDigit(s[j]) {
			return false
		}
	}
	return true
}

// num parses the n digits at s[i:], already known to be digits.
func num[T text](s T, i, n int) int {
	v := 0
	for j := i; j < i+n; j++ {
		v = v*10 + int(s[j]-'0')
	}
	return v
}

func checkDatetimeSyntax[T text](s T) error {
	_, err := datetimeZone(s)
	return err
}

// datetimeZone validates the shape and returns the index where the zone
// starts.
func datetimeZone[T text](s T) (int, error) {
	n := len(s)
	if n == 0 {
		return 0, ErrDatetimeEmpty
	}
	if n > MaxDatetimeLen {
		return 0, ErrDatetimeTooLong
	}
	// "YYYY-MM-DDTHH:MM:SS" is 19 bytes, the zone at least one more.
	if n < 20 || !digitsAt(s, 0, 4) || s[4] != '-' || !digitsAt(s, 5, 2) || s[7] != '-' ||
		!digitsAt(s, 8, 2) || s[10] != 'T' || !digitsAt(s, 11, 2) || s[13] != ':' ||
		!digitsAt(s, 14, 2) || s[16] != ':' || !digitsAt(s, 17, 2) {
		return 0, ErrDatetimeSyntax
	}
	z := 19
	if s[z] == '.' {
		z++
		for z < n && isDigit(s[z]) {
			z++
		}
		if z == 20 {
			return 0, ErrDatetimeSyntax
		}
	}
	switch {
	case z == n-1 && s[z] == 'Z':
		return z, nil
	case z == n-6 && (s[z] == '+' || s[z] == '-') && digitsAt(s, z+1, 2) && s[z+3] == ':' && digitsAt(s, z+4, 2):
		if s[z] == '-' && s[z+1] == '0' && s[z+2] == '0' && s[z+4] == '0' && s[z+5] == '0' {
			return 0, ErrDatetimeNegZero
		}
		return z, nil
	}
	return 0, ErrDatetimeSyntax
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

func parseDatetime[T text](s T) (time.Time, error) {
	z, err := datetimeZone(s)
	if err != nil {
		return time.Time{}, err
	}
	year, month, day := num(s, 0, 4), num(s, 5, 2), num(s, 8, 2)
	hour, minute, sec := num(s, 11, 2), num(s, 14, 2), num(s, 17, 2)
	switch {
	case month < 1 || month > 12:
		return time.Time{}, ErrDatetimeMonth
	case day < 1 || day > daysIn(month, year):
		return time.Time{}, ErrDatetimeDay
	case hour > 23:
		return time.Time{}, ErrDatetimeHour
	case minute > 59:
		return time.Time{}, ErrDatetimeMinute
	case sec > 59:
		return time.Time{}, ErrDatetimeSecond
	}
	nsec, scale := 0, 100_000_000
	for i := 20; i < z && scale > 0; i++ {
		nsec += int(s[i]-'0') * scale
		scale /= 10
	}
	offset := 0
	if s[z] != 'Z' {
		oh, om := num(s, z+1, 2), num(s, z+4, 2)
		if oh > 23 || om > 59 {
			return time.Time{}, ErrDatetimeOffset
		}
		offset = oh*3600 + om*60
		if s[z] == '-' {
			offset = -offset
		}
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	t = t.Add(-time.Duration(offset) * time.Second)
	if t.Year() < 0 {
		return time.Time{}, ErrDatetimeNegative
	}
	return t, nil
}
