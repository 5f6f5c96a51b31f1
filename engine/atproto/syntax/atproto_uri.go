package syntax

// MaxATURILen is the length limit of an at-uri in bytes.
const MaxATURILen = 8192

// ATIdentifier is a syntactically valid DID or handle.
type ATIdentifier string

// ParseATIdentifier validates s as a DID (if it starts with "did:") or
// otherwise a handle, and returns it typed.
func ParseATIdentifier(s string) (ATIdentifier, error) {
	if err := checkATIdentifier(s); err != nil {
		return "", err
	}
	return ATIdentifier(s), nil
}

// CheckATIdentifier validates b as a DID when it starts with "did:" and as
// a handle otherwise, returning that check's reason. It does not allocate.
func CheckATIdentifier(b []byte) error { return checkATIdentifier(b) }

// IsDID reports whether a is a DID rather than a handle.
func (a ATIdentifier) IsDID() bool { return hasPrefix(a, "did:") }

// String returns a as a plain string.
func (a ATIdentifier) String() string { return string(a) }

func checkATIdentifier[T text](s T) error {
	if len(s) == 0 {
		return ErrATIdentifierEmpty
	}
	if hasPrefix(s, "did:") {
		return checkDID(s)
	}
	return checkHandle(s)
}

// ATURI is a syntactically valid at-uri of the restricted Lexicon form
// at://<did-or-handle>[/<collection>[/<rkey>]], without query or fragment.
type ATURI string

// ParseATURI validates s as an at-uri and returns it typed.
func ParseATURI(s string) (ATURI, error) {
	if err := checkATURI(s); err != nil {
		return "", err
	}
	return ATURI(s), nil
}

// CheckATURI validates b as an at-uri: "at://", an AT-identifier, then
// optionally "/" and a collection NSID, then optionally "/" and a record
// key; no trailing slash, query or fragment; at most 8192 bytes. It does not
// allocate.
func CheckATURI(b []byte) error { return checkATURI(b) }

// String returns u as a plain string.
func (u ATURI) String() string { return string(u) }

func checkATURI[T text](s T) error {
	if len(s) > MaxATURILen {
		return ErrATURITooLong
	}
	if !hasPrefix(s, "at://") {
		return ErrATURIPrefix
	}
	rest := s[len("at://"):]
	i := indexByte(rest, '/')
	if i < 0 {
		return checkATIdentifier(rest)
	}
	if err := checkATIdentifier(rest[:i]); err != nil {
		return err
	}
	rest = rest[i+1:]
	i = indexByte(rest, '/')
	if i < 0 {
		return checkNSID(rest)
	}
	if err := checkNSID(rest[:i]); err != nil {
		return err
	}
	rest = rest[i+1:]
	if indexByte(rest, '/') >= 0 {
		return ErrATURIPath
	}
	return checkRecordKey(rest)
}
