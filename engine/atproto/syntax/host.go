package syntax

import (
	"net/netip"
	"strconv"
	"strings"
)

// MaxHostLen bounds a normalized host, port included: the DNS name limit.
const MaxHostLen = 253

// NormalizeHost reduces a host as the relay meets it — a requestCrawl
// hostname, a stored host row, the host a dial is for, the authority of a
// DID document's #atproto_pds endpoint — to the one string hosts are
// stored, dialled and compared under (digest §8.3, §14.2). Every caller
// uses it, so the same host is the same string whichever path it came by,
// and the authority check's string comparison means what it says.
//
// The result is lower case, without surrounding space, scheme or trailing
// "/". An https:// or wss:// prefix is dropped; http:// and ws:// need dev.
// Any other input is refused with one of the ErrHost… reasons:
//
//   - An ordinary host is a DNS name: two or more labels of 1–63 [a-z0-9-]
//     not starting or ending with '-', a top-level label not starting with
//     a digit (so no IPv4 literal in any spelling passes as a name), at
//     most MaxHostLen bytes, no port.
//   - With dev (the development switch) also: "localhost", names under
//     ".localhost" (RFC 6761 loopback, for TLS test fleets) and loopback IP
//     literals ("127.0.0.1", "[::1]"), each optionally with a port
//     ("localhost:2583"; decimal 1–65535, no leading zero). Without dev
//     these are ErrHostDevOnly, and every other IP literal is ErrHostIP.
//
// Whether an address a name resolves to may be dialled is not decided
// here: engine/netguard checks it at dial time (private ranges, NAT64 …).
func NormalizeHost(s string, dev bool) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) > 2*MaxHostLen {
		return "", ErrHostTooLong // before lower-casing a hostile megabyte
	}
	s = strings.ToLower(s)
	if i := strings.Index(s, "://"); i >= 0 {
		switch s[:i] {
		case "https", "wss":
		case "http", "ws":
			if !dev {
				return "", ErrHostDevOnly
			}
		default:
			return "", ErrHostScheme
		}
		s = s[i+3:]
	}
	s = strings.TrimSuffix(s, "/")
	if s == "" {
		return "", ErrHostEmpty
	}
	if len(s) > MaxHostLen {
		return "", ErrHostTooLong
	}
	name, port := s, ""
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.HasSuffix(s, "]") {
		name, port = s[:i], s[i+1:]
		if !validPort(port) {
			return "", ErrHostPort
		}
	}
	if ip, ok := ipLiteral(name); ok {
		if !ip.IsLoopback() || ip.Zone() != "" || ip.Is4In6() {
			return "", ErrHostIP
		}
		if !dev {
			return "", ErrHostDevOnly
		}
		if name = ip.String(); ip.Is6() {
			name = "[" + name + "]"
		}
		if port == "" {
			return name, nil
		}
		return name + ":" + port, nil
	}
	devName := name == "localhost" || strings.HasSuffix(name, ".localhost")
	if err := checkHostName(name, devName); err != nil {
		return "", err
	}
	switch {
	case (devName || port != "") && !dev:
		return "", ErrHostDevOnly
	case port != "" && !devName:
		return "", ErrHostPortNotDev
	}
	return s, nil
}

// ipLiteral parses name as an IPv4 literal or a bracketed IPv6 one.
func ipLiteral(name string) (netip.Addr, bool) {
	if inner, ok := strings.CutPrefix(name, "["); ok {
		inner, ok = strings.CutSuffix(inner, "]")
		ip, err := netip.ParseAddr(inner)
		return ip, ok && err == nil && ip.Is6()
	}
	ip, err := netip.ParseAddr(name)
	return ip, err == nil && ip.Is4()
}

// checkHostName applies the DNS name rules to name. A development name
// ("localhost", which has one label) is exempt from the two-label rule.
func checkHostName(name string, devName bool) error {
	labels, start := 0, 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return ErrHostChar
			}
			continue
		}
		l := name[start:i]
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return ErrHostLabel
		}
		labels++
		if i == len(name) {
			if labels < 2 && !devName {
				return ErrHostTooFewLabels
			}
			if l[0] >= '0' && l[0] <= '9' {
				return ErrHostTLDLeadsDigit
			}
		}
		start = i + 1
	}
	return nil
}

// validPort reports whether p is a port number as the relay writes one:
// decimal 1–65535 without a leading zero.
func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == p
}

// PlaintextHost reports whether a host NormalizeHost returned is reached
// without TLS (http://, ws://): "localhost" and loopback literals, with or
// without a port, which only the development switch lets through. Names
// under ".localhost" are TLS test fleets (one certificate for
// *.localhost) and, like every public host, use https:// and wss://.
func PlaintextHost(host string) bool {
	name := host
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		name = host[:i]
	}
	if strings.EqualFold(name, "localhost") {
		return true
	}
	ip, ok := ipLiteral(name)
	return ok && ip.IsLoopback()
}
