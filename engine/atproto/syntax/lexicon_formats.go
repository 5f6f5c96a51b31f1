package syntax

// Limits of the loose Lexicon string formats.
const (
	// MaxURILen is the length limit of a generic uri in bytes.
	MaxURILen = 8192
	// MaxCIDStringLen is the length limit of a Lexicon cid string.
	MaxCIDStringLen = 256
	// MaxLanguageLen is the length limit of a language tag in bytes.
	MaxLanguageLen = 128
)

// CheckURI validates b as the Lexicon uri format: a scheme matching
// [a-z][a-z.-]{0,80}, ':', then one or more printable non-space ASCII bytes;
// at most 8192 bytes. It does not allocate.
func CheckURI(b []byte) error { return checkURI(b) }

func checkURI[T text](s T) error {
	n := len(s)
	switch {
	case n == 0:
		return ErrURIEmpty
	case n > MaxURILen:
		return ErrURITooLong
	case !isLower(s[0]):
		return ErrURIScheme
	}
	i := 1
	for i < n && (isLower(s[i]) || s[i] == '.' || s[i] == '-') {
		i++
	}
	if i > 81 || i == n || s[i] != ':' {
		return ErrURIScheme
	}
	i++
	if i == n {
		return ErrURIBody
	}
	for ; i < n; i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return ErrURIBody
		}
	}
	return nil
}

// CheckCIDString validates b as the loose Lexicon cid string format: 8–256
// bytes of [A-Za-z0-9+=] (any multibase), not a CIDv0 ("Qmb…"). The strict
// binary CID profile lives in engine/atproto/cid. It does not allocate.
func CheckCIDString(b []byte) error { return checkCIDString(b) }

func checkCIDString[T text](s T) error {
	if len(s) < 8 || len(s) > MaxCIDStringLen {
		return ErrCIDStringLength
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '+' && c != '=' {
			return ErrCIDStringChar
		}
	}
	if hasPrefix(s, "Qmb") {
		return ErrCIDStringV0
	}
	return nil
}

// CheckLanguageSyntax validates b as a BCP 47 language tag in the naive form
// the Lexicon language format accepts: a primary subtag that is "i", "x"/"X"
// (private use) or 2–3 lower-case letters, then '-'-separated subtags of 1–8
// letters or digits; at most 128 bytes. It does not allocate.
func CheckLanguageSyntax(b []byte) error { return checkLanguageSyntax(b) }

// CheckLanguage validates b like CheckLanguageSyntax and also rejects tags
// RFC 5646 §2.2.9 calls invalid although well formed: a variant subtag or an
// extension singleton repeated (case-insensitively) before the private-use
// part. It does not allocate.
func CheckLanguage(b []byte) error {
	if err := checkLanguageSyntax(b); err != nil {
		return err
	}
	return checkLanguageDuplicates(b)
}

func checkLanguageSyntax[T text](s T) error {
	n := len(s)
	switch {
	case n == 0:
		return ErrLanguageEmpty
	case n > MaxLanguageLen:
		return ErrLanguageTooLong
	}
	i := 0
	for i < n && s[i] != '-' {
		i++
	}
	switch p := s[:i]; {
	case len(p) == 1 && (p[0] == 'i' || p[0] == 'x' || p[0] == 'X'):
	case len(p) >= 2 && len(p) <= 3 && isLower(p[0]) && isLower(p[1]) && (len(p) == 2 || isLower(p[2])):
	default:
		return ErrLanguageSyntax
	}
	for i < n {
		i++ // the '-'
		start := i
		for i < n && s[i] != '-' {
			if !isAlnum(s[i]) {
				return ErrLanguageSyntax
			}
			i++
		}
		if l := i - start; l < 1 || l > 8 {
			return ErrLanguageSyntax
		}
	}
	return nil
}

// subtag returns the '-'-separated subtag of s starting at i and the index
// just past it.
func subtag(s []byte, i int) ([]byte, int) {
	j := i
	for j < len(s) && s[j] != '-' {
		j++
	}
	return s[i:j], j
}

// isVariant reports whether t has the shape of an RFC 5646 variant subtag:
// 5–8 alphanumerics, or 4 starting with a digit.
func isVariant(t []byte) bool {
	return len(t) >= 5 || (len(t) == 4 && isDigit(t[0]))
}

// checkLanguageDuplicates scans the syntactically valid tag s. Tags are at
// most 128 bytes, so the quadratic scan costs less than any set.
func checkLanguageDuplicates(s []byte) error {
	_, i := subtag(s, 0)
	if len(s) > 0 && (s[0] == 'x' || s[0] == 'X') {
		return nil
	}
	inExtension := false
	for i < len(s) {
		t, next := subtag(s, i+1)
		if len(t) == 1 {
			if t[0] == 'x' || t[0] == 'X' {
				return nil
			}
			inExtension = true
			if repeatsLater(s, next, t, true) {
				return ErrLanguageDuplicate
			}
		} else if !inExtension && isVariant(t) && repeatsLater(s, next, t, false) {
			return ErrLanguageDuplicate
		}
		i = next
	}
	return nil
}

// repeatsLater reports whether t occurs again (ASCII case-insensitively)
// among the subtags of s from index i, stopping at the private-use
// singleton; singletonsOnly restricts the search to one-byte subtags, and a
// variant search stops at the first singleton.
func repeatsLater(s []byte, i int, t []byte, singletonsOnly bool) bool {
	for i < len(s) {
		u, next := subtag(s, i+1)
		if len(u) == 1 && (u[0] == 'x' || u[0] == 'X') {
			return false
		}
		if !singletonsOnly && len(u) == 1 {
			return false
		}
		if len(u) == len(t) && (!singletonsOnly || len(u) == 1) && equalFoldBytes(u, t) {
			return true
		}
		i = next
	}
	return false
}

func equalFoldBytes(a, b []byte) bool {
	for i := range a {
		x, y := a[i], b[i]
		if isUpper(x) {
			x += 'a' - 'A'
		}
		if isUpper(y) {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
