package upstream

import (
	"strings"
	"unicode/utf8"
)

// MaxLogStringBytes is how much of a remote string LogString keeps.
const MaxLogStringBytes = 128

// LogString returns remote text (an error frame's name or message, an #info
// name, a peer's error text) fit for a log line: valid UTF-8 (invalid bytes
// become U+FFFD), at most MaxLogStringBytes bytes of it, and "…" appended
// when it was cut. A host's 5 MB error name then costs a log line a few
// hundred bytes. Rate-limit the line itself with Host.LogAllowed.
func LogString(s []byte) string {
	var b strings.Builder
	b.Grow(min(len(s), MaxLogStringBytes) + len("…"))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRune(s[i:])
		if b.Len()+utf8.RuneLen(r) > MaxLogStringBytes {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		i += size
	}
	return b.String()
}

// remoteError bounds the text of an error handed to Config.OnDisconnect:
// handshake and TLS errors can quote the peer (a certificate's names, a
// malformed header), and the engine logs them. errors.Is and errors.As see
// through it.
type remoteError struct{ err error }

func (e remoteError) Error() string { return LogString([]byte(e.err.Error())) }

func (e remoteError) Unwrap() error { return e.err }
