package syntax

// MaxDIDLen is the hard length limit of a DID in bytes (spec §2.1).
const MaxDIDLen = 2048

// DID is a syntactically valid DID. Build one with ParseDID; a conversion
// from an unchecked string skips validation.
type DID string

// ParseDID validates s as generic DID syntax and returns it typed.
func ParseDID(s string) (DID, error) {
	if err := checkDID(s); err != nil {
		return "", err
	}
	return DID(s), nil
}

// CheckDID validates b as generic DID syntax:
// ^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$, at most MaxDIDLen bytes,
// with every '%' followed by two hex digits. It does not allocate.
func CheckDID(b []byte) error { return checkDID(b) }

// CheckBlessedDID validates b as a DID of a method the relay serves:
// did:plc with 24 lowercase base32 characters, or did:web naming a lowercase
// hostname (a %3A port is allowed only for localhost). Other well-formed
// DIDs return ErrDIDUnsupportedMethod, so callers can tell "bad syntax"
// from "unsupported method". It does not allocate.
func CheckBlessedDID(b []byte) error { return checkBlessedDID(b) }

// Method returns the method name ("plc", "web", …), or "" if d is not valid.
func (d DID) Method() string {
	if !hasPrefix(d, "did:") {
		return ""
	}
	rest := d[4:]
	i := indexByte(rest, ':')
	if i < 0 {
		return ""
	}
	return string(rest[:i])
}

// Identifier returns the method-specific identifier, or "" if d is not valid.
func (d DID) Identifier() string {
	m := d.Method()
	if m == "" {
		return ""
	}
	return string(d[len("did:")+len(m)+1:])
}

// String returns d as a plain string.
func (d DID) String() string { return string(d) }

func checkDID[T text](s T) error {
	n := len(s)
	switch {
	case n == 0:
		return ErrDIDEmpty
	case n > MaxDIDLen:
		return ErrDIDTooLong
	case !hasPrefix(s, "did:"):
		return ErrDIDPrefix
	}
	i := 4
	for i < n && isLower(s[i]) {
		i++
	}
	if i == 4 || i >= n || s[i] != ':' {
		return ErrDIDMethod
	}
	i++
	if i == n {
		return ErrDIDIdentifierEmpty
	}
	for ; i < n; i++ {
		c := s[i]
		if isAlnum(c) || c == '.' || c == '_' || c == ':' || c == '-' {
			continue
		}
		if c != '%' {
			return ErrDIDChar
		}
		if i == n-1 {
			return ErrDIDTrailing
		}
		if i+2 >= n || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return ErrDIDPercent
		}
		i += 2
	}
	if s[n-1] == ':' {
		return ErrDIDTrailing
	}
	return nil
}

func checkBlessedDID[T text](s T) error {
	if err := checkDID(s); err != nil {
		return err
	}
	switch {
	case hasPrefix(s, "did:plc:"):
		id := s[len("did:plc:"):]
		if len(id) != 24 {
			return ErrDIDPLCIdentifier
		}
		for i := 0; i < len(id); i++ {
			if c := id[i]; !isLower(c) && (c < '2' || c > '7') {
				return ErrDIDPLCIdentifier
			}
		}
		return nil
	case hasPrefix(s, "did:web:"):
		return checkWebHost(s[len("did:web:"):])
	}
	return ErrDIDUnsupportedMethod
}

// checkWebHost validates the identifier of a did:web: a lowercase hostname
// with handle syntax, or localhost with an optional percent-encoded port, the
// one development form the spec allows.
func checkWebHost[T text](h T) error {
	if hasPrefix(h, "localhost") {
		rest := h[len("localhost"):]
		if len(rest) == 0 {
			return nil
		}
		// Five port digits at most after the three-byte escape.
		if len(rest) < 4 || len(rest) > 8 || rest[0] != '%' || rest[1] != '3' || (rest[2] != 'A' && rest[2] != 'a') {
			return ErrDIDWebHost
		}
		for i := 3; i < len(rest); i++ {
			if !isDigit(rest[i]) {
				return ErrDIDWebHost
			}
		}
		return nil
	}
	if checkHandle(h) != nil {
		return ErrDIDWebHost
	}
	for i := 0; i < len(h); i++ {
		if isUpper(h[i]) {
			return ErrDIDWebHost
		}
	}
	return nil
}
