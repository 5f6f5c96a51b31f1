package syntax

// MaxNSIDLen is the length limit of an NSID in bytes (spec §2.3).
const MaxNSIDLen = 317

// NSID is a syntactically valid namespaced identifier, e.g.
// "app.bsky.feed.post": a reversed domain authority and a final name.
//
// The digest's 253-byte cap on the authority is not enforced: the interop
// fixtures list a valid NSID whose authority is 283 bytes, and the
// published regex has no such cap; only the 317-byte total applies.
type NSID string

// ParseNSID validates s as NSID syntax and returns it typed.
func ParseNSID(s string) (NSID, error) {
	if err := checkNSID(s); err != nil {
		return "", err
	}
	return NSID(s), nil
}

// CheckNSID validates b as NSID syntax: three or more segments, at most 317
// bytes; domain segments of 1–63 bytes of [A-Za-z0-9-] without a leading or
// trailing '-', the first not starting with a digit; a name segment of [A-Za-z][A-Za-z0-9]{0,62}. It does not
// allocate.
func CheckNSID(b []byte) error { return checkNSID(b) }

// Authority returns the reversed domain authority ("app.bsky.feed"), or ""
// if n is not valid.
func (n NSID) Authority() string {
	i := len(n) - 1
	for i >= 0 && n[i] != '.' {
		i--
	}
	if i < 0 {
		return ""
	}
	return string(n[:i])
}

// Name returns the final segment ("post").
func (n NSID) Name() string {
	i := len(n) - 1
	for i >= 0 && n[i] != '.' {
		i--
	}
	return string(n[i+1:])
}

// String returns n as a plain string.
func (n NSID) String() string { return string(n) }

func checkNSID[T text](s T) error {
	n := len(s)
	if n == 0 {
		return ErrNSIDEmpty
	}
	if n > MaxNSIDLen {
		return ErrNSIDTooLong
	}
	segments, start := 0, 0
	for i := 0; i < n; i++ {
		if s[i] != '.' {
			if c := s[i]; !isAlnum(c) && c != '-' {
				return ErrNSIDChar
			}
			continue
		}
		switch l := i - start; {
		case l == 0:
			return ErrNSIDEmptySegment
		case l > 63:
			return ErrNSIDSegmentTooLong
		case s[start] == '-' || s[i-1] == '-':
			return ErrNSIDSegmentHyphen
		case segments == 0 && isDigit(s[start]):
			return ErrNSIDLeadingDigit
		}
		segments++
		start = i + 1
	}
	if segments < 2 {
		return ErrNSIDTooFewSegments
	}
	name := s[start:]
	switch {
	case len(name) == 0:
		return ErrNSIDEmptySegment
	case len(name) > 63:
		return ErrNSIDSegmentTooLong
	case !isAlpha(name[0]):
		return ErrNSIDName
	}
	for i := 1; i < len(name); i++ {
		if !isAlnum(name[i]) {
			return ErrNSIDName
		}
	}
	return nil
}
