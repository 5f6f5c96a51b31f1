package syntax

// Record key and repository path limits (spec §2.4, §2.5).
const (
	// MaxRecordKeyLen is the length limit of a record key in bytes.
	MaxRecordKeyLen = 512
	// MaxRepoPathLen is the length limit of a repository path (MST key) in
	// bytes, as the reference implementation enforces it.
	MaxRepoPathLen = 1024
)

// RecordKey is a syntactically valid record key.
type RecordKey string

// ParseRecordKey validates s as record-key syntax and returns it typed.
func ParseRecordKey(s string) (RecordKey, error) {
	if err := checkRecordKey(s); err != nil {
		return "", err
	}
	return RecordKey(s), nil
}

// CheckRecordKey validates b as record-key syntax: 1–512 bytes of
// [A-Za-z0-9._:~-], not "." and not "..". It does not allocate.
func CheckRecordKey(b []byte) error { return checkRecordKey(b) }

// String returns k as a plain string.
func (k RecordKey) String() string { return string(k) }

// CheckRepoPath validates b as a repository path (MST key)
// "<collection NSID>/<record key>". ':' is accepted in the record key
// (spec §17.22). It does not allocate.
func CheckRepoPath(b []byte) error {
	_, _, err := SplitRepoPath(b)
	return err
}

// SplitRepoPath validates b as a repository path and returns its collection
// and record key. Both results alias b and live as long as b does.
func SplitRepoPath(b []byte) (collection, rkey []byte, err error) {
	if len(b) > MaxRepoPathLen {
		return nil, nil, ErrRepoPathTooLong
	}
	i := indexByte(b, '/')
	if i < 0 || indexByte(b[i+1:], '/') >= 0 {
		return nil, nil, ErrRepoPathSlash
	}
	if err := checkNSID(b[:i]); err != nil {
		return nil, nil, err
	}
	if err := checkRecordKey(b[i+1:]); err != nil {
		return nil, nil, err
	}
	return b[:i], b[i+1:], nil
}

func checkRecordKey[T text](s T) error {
	n := len(s)
	switch {
	case n == 0:
		return ErrRecordKeyEmpty
	case n > MaxRecordKeyLen:
		return ErrRecordKeyTooLong
	}
	for i := 0; i < n; i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != ':' && c != '~' && c != '-' {
			return ErrRecordKeyChar
		}
	}
	if s[0] == '.' && (n == 1 || (n == 2 && s[1] == '.')) {
		return ErrRecordKeyDots
	}
	return nil
}
