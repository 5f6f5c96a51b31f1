package syntax

// MaxHandleLen is the length limit of a handle in bytes (spec §2.2).
const MaxHandleLen = 253

// HandleInvalid is the special handle value meaning "no verified handle".
const HandleInvalid Handle = "handle.invalid"

// Handle is a syntactically valid handle, in the case it arrived in. Handles
// compare case-insensitively; use Normalize before comparing or storing.
type Handle string

// ParseHandle validates s as handle syntax and returns it typed.
func ParseHandle(s string) (Handle, error) {
	if err := checkHandle(s); err != nil {
		return "", err
	}
	return Handle(s), nil
}

// CheckHandle validates b as handle syntax: at most 253 bytes, two or more
// dot-separated labels of 1–63 bytes of [A-Za-z0-9-], no label starting or
// ending with '-', the last label not starting with a digit. Disallowed TLDs
// (.local, .onion, …) are syntactically valid; see Handle.HasDisallowedTLD.
// It does not allocate.
func CheckHandle(b []byte) error { return checkHandle(b) }

// Normalize returns h in lower case, the form handles are compared and
// stored in. It allocates only when h has an upper-case byte.
func (h Handle) Normalize() Handle {
	for i := 0; i < len(h); i++ {
		if isUpper(h[i]) {
			b := []byte(h)
			for j := i; j < len(b); j++ {
				if isUpper(b[j]) {
					b[j] += 'a' - 'A'
				}
			}
			return Handle(b)
		}
	}
	return h
}

// HasDisallowedTLD reports whether h ends in a top-level domain that can
// never resolve (spec §2.2): .alt .arpa .example .internal .invalid .local
// .localhost .onion, compared case-insensitively. The value HandleInvalid
// therefore reports true. ".test" is allowed here; callers decide whether
// they run in development.
func (h Handle) HasDisallowedTLD() bool {
	i := len(h) - 1
	for i >= 0 && h[i] != '.' {
		i--
	}
	tld := h[i+1:]
	for _, bad := range [...]string{"alt", "arpa", "example", "internal", "invalid", "local", "localhost", "onion"} {
		if equalFoldASCII(tld, bad) {
			return true
		}
	}
	return false
}

// String returns h as a plain string.
func (h Handle) String() string { return string(h) }

func equalFoldASCII[T text](a T, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := a[i]
		if isUpper(c) {
			c += 'a' - 'A'
		}
		if c != b[i] {
			return false
		}
	}
	return true
}

func checkHandle[T text](s T) error {
	n := len(s)
	if n == 0 {
		return ErrHandleEmpty
	}
	if n > MaxHandleLen {
		return ErrHandleTooLong
	}
	labels, start, last := 0, 0, 0
	for i := 0; i <= n; i++ {
		if i < n && s[i] != '.' {
			if c := s[i]; !isAlnum(c) && c != '-' {
				return ErrHandleChar
			}
			continue
		}
		switch l := i - start; {
		case l == 0:
			return ErrHandleEmptyLabel
		case l > 63:
			return ErrHandleLabelTooLong
		case s[start] == '-' || s[i-1] == '-':
			return ErrHandleLabelHyphen
		}
		labels++
		last = start
		start = i + 1
	}
	if labels < 2 {
		return ErrHandleTooFewLabels
	}
	if isDigit(s[last]) {
		return ErrHandleTLDLeadsDigit
	}
	return nil
}
