package upstream

import "io"

// handshakeReadBufferBytes is the bufio buffer gobwas/ws reads the upgrade
// response through (ws.Dialer.ReadBufferSize). It is also the most the
// upgrade can read past the response head: frames the host sent right
// behind it, handed to the first turn as pending bytes.
const handshakeReadBufferBytes = 4 << 10

// maxTLSHandshakeBytes bounds what the TLS handshake may read from the
// server (nbConn.flightLeft). crypto/tls keeps a copy of the server's
// certificate message for the life of the connection (the parsed
// certificates point into it), plus the parsed certificates, their keys in
// its certificate cache and its handshake buffer: about four times the
// chain's size. Its record buffer, sized by the largest handshake record,
// doubles from there when the first full data record arrives. The chain is
// the server's to choose (crypto/tls accepts a 256 KiB certificate
// message, extra certificates and extensions included), so without a
// bound one host's connection could hold a megabyte.
//
// Why 10 KiB: real flights are 3 to 7 KB. A Let's Encrypt chain (ECDSA or
// RSA leaf and one intermediate) is 2.2 to 2.6 KB, a commercial CA's with
// two intermediates 5 to 6 KB; the rest of the flight (ServerHello with a
// hybrid X25519MLKEM768 key share, EncryptedExtensions, CertificateVerify,
// Finished, record headers and AEAD tags) adds about 1.6 KB, 0.3 KB more
// with an RSA 4096 key. 10 KiB leaves 2.5 KB over the largest of these.
// Every KiB of it costs about 4 KiB a TLS host at the bound
// (HostBytesTLS is measured with a chain that fills it), and HostBytesTLS
// decides how many hosts a relay's memory share admits. A host with a
// larger chain is refused, visibly: reason "handshake_too_large".
const maxTLSHandshakeBytes = 10 << 10

// headLimiter sits between gobwas/ws's upgrade and the connection while the
// response head (status line and headers) is read, and fails the read that
// would take the head past maxBytes or maxLines lines. gobwas/ws reads a
// header line of any length by appending buffer-sized chunks until it sees
// '\n', so without this a host streaming one endless line grows our heap
// for the whole HandshakeTimeout; here it costs at most maxBytes plus one
// read buffer.
//
// It counts lines the way gobwas/ws splits them (on '\n', an optional '\r'
// before it) and stops counting at the blank line that ends the head: bytes
// after it are frames, bounded by the upgrade's read buffer. Used by one
// dialer goroutine, for one handshake only; writes pass through.
type headLimiter struct {
	rw       io.ReadWriter
	maxBytes int // head bytes allowed, '\r' and '\n' included
	maxLines int // status line plus headers, the blank line excluded

	bytes   int  // head bytes seen so far
	lines   int  // complete lines seen so far
	lineLen int  // bytes of the current line, a trailing '\r' excluded
	cr      bool // the last byte was '\r' (maybe the start of "\r\n")
	done    bool // the blank line was seen; count nothing more
}

// Read implements io.Reader. It never asks for more than one byte past the
// head's remaining budget, so an oversized head fails after at most
// maxBytes+1 bytes.
func (l *headLimiter) Read(p []byte) (int, error) {
	if l.done {
		return l.rw.Read(p)
	}
	if left := l.maxBytes - l.bytes + 1; len(p) > left {
		p = p[:left]
	}
	n, err := l.rw.Read(p)
	if l.scan(p[:n]) {
		return 0, ErrHandshakeTooLarge
	}
	return n, err
}

// scan counts the head bytes and lines in b and reports whether the head
// broke a limit.
func (l *headLimiter) scan(b []byte) (tooLarge bool) {
	for _, c := range b {
		if l.done {
			return false
		}
		l.bytes++
		if l.bytes > l.maxBytes {
			return true
		}
		switch c {
		case '\n':
			// A '\r' right before is part of the terminator (l.cr).
			l.cr = false
			if l.lineLen == 0 {
				l.done = true
				continue
			}
			l.lines++
			l.lineLen = 0
			if l.lines > l.maxLines {
				return true
			}
		case '\r':
			if l.cr {
				l.lineLen++ // the previous '\r' was line content after all
			}
			l.cr = true
		default:
			if l.cr {
				l.lineLen++
				l.cr = false
			}
			l.lineLen++
		}
	}
	return false
}

// Write implements io.Writer: the upgrade request passes unchanged.
func (l *headLimiter) Write(p []byte) (int, error) { return l.rw.Write(p) }
