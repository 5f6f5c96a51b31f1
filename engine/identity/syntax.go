package identity

import (
	"net/url"
	"strings"

	"github.com/atrelay/relay/engine/atproto/syntax"
)

// plcIDLen is the length of the method-specific part of a did:plc: 24
// characters of lower-case base32 (a truncated SHA-256), 15 bytes decoded.
const plcIDLen = 24

// plcKey is a did:plc in binary form: the base32 identifier decoded. Used as
// the cache key it is pointer-free, so 40 million of them cost the garbage
// collector nothing to scan.
type plcKey [15]byte

const (
	plcPrefix = "did:plc:"
	webPrefix = "did:web:"
)

// didRef is a parsed DID: either a did:plc (plc set) or a did:web (host
// holds the decoded host[:port]).
type didRef struct {
	isPLC   bool
	plc     plcKey
	host    string // did:web only: lower-case host, optional :port
	hasPort bool   // did:web only: host carries an explicit port
}

// parseDID accepts the two methods atproto supports. did:plc must be exactly
// 24 lower-case base32 characters; did:web is a domain name (see webHost)
// with an optional %3A-encoded port and no path. Whether a port is
// acceptable depends on the resolver's development switch (Resolver.parse).
func parseDID(did string) (didRef, error) {
	if len(did) > syntax.MaxDIDLen {
		return didRef{}, ErrBadDID
	}
	if id, ok := strings.CutPrefix(did, plcPrefix); ok {
		k, ok := decodePLC(id)
		if !ok {
			return didRef{}, ErrBadDID
		}
		return didRef{isPLC: true, plc: k}, nil
	}
	if h, ok := strings.CutPrefix(did, webPrefix); ok {
		host, port, ok := webHost(h)
		if !ok {
			return didRef{}, ErrBadDID
		}
		return didRef{host: host, hasPort: port}, nil
	}
	if strings.HasPrefix(did, "did:") {
		return didRef{}, ErrUnsupportedMethod
	}
	return didRef{}, ErrBadDID
}

// decodePLC decodes 24 base32 characters (a-z, 2-7) into 15 bytes.
func decodePLC(id string) (k plcKey, ok bool) {
	if len(id) != plcIDLen {
		return k, false
	}
	var acc uint64
	bits, o := 0, 0
	for i := 0; i < len(id); i++ {
		c := id[i]
		var v byte
		switch {
		case c >= 'a' && c <= 'z':
			v = c - 'a'
		case c >= '2' && c <= '7':
			v = c - '2' + 26
		default:
			return k, false
		}
		acc = acc<<5 | uint64(v)
		bits += 5
		if bits >= 8 {
			bits -= 8
			k[o] = byte(acc >> bits)
			o++
		}
	}
	return k, true
}

// webHost decodes the method-specific part of a did:web: a lower-case
// domain name, optionally followed by %3A and a port, reporting whether it
// had one. Path segments (further colons) are not allowed in atproto.
//
// The name must have two or more labels and a top-level label not starting
// with a digit (the handle rule, digest §2.2), or be "localhost": so no IP
// literal, in any of the spellings a resolver might accept ("127.0.0.1",
// "0x7f.1", "2130706433"), ever becomes a request. The address a name
// resolves to is checked again when dialing (engine/netguard).
func webHost(s string) (host string, hasPort bool, ok bool) {
	host, port := s, ""
	if i := strings.Index(s, "%3A"); i >= 0 {
		host, port = s[:i], s[i+3:]
	} else if i := strings.Index(s, "%3a"); i >= 0 {
		host, port = s[:i], s[i+3:]
	}
	if host != "localhost" && !validHostname(host) {
		return "", false, false
	}
	if port == "" {
		if len(s) != len(host) {
			return "", false, false
		}
		return host, false, true
	}
	if !validPort(port) {
		return "", false, false
	}
	return host + ":" + port, true, true
}

func validPort(p string) bool {
	if len(p) == 0 || len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n > 0 && n <= 65535
}

// validHostname reports whether h is a lower-case name with handle syntax
// (digest §2.2: two or more labels, a top-level label not starting with a
// digit). Callers lower-case first where the input is case-insensitive.
func validHostname(h string) bool {
	_, err := syntax.ParseHandle(h)
	return err == nil && strings.ToLower(h) == h
}

// handleFromAKA returns the first syntactically valid handle among
// "at://<handle>" entries of alsoKnownAs, lower-cased, or "" if none.
func handleFromAKA(aka []string) string {
	for _, s := range aka {
		h, ok := strings.CutPrefix(s, "at://")
		if !ok {
			continue
		}
		h = strings.ToLower(h)
		if validHostname(h) {
			return h
		}
	}
	return ""
}

// NormalizePDSHost turns a #atproto_pds serviceEndpoint into the host name
// the relay compares upstream connections against (digest §8.3): the
// endpoint's authority through syntax.NormalizeHost, the one normalizer
// every host passes, so it equals the stored host row of the same PDS. The
// scheme is http or https (the relay dials hosts itself; only the name
// counts), and the scheme's default port is dropped (RFC 3986 §6.2.3: it
// names the same authority); any other port, localhost and loopback
// addresses are development hosts, accepted only with dev. E.g.
// "https://PDS.example.com:443/" → "pds.example.com" and, with dev,
// "http://localhost:5201" → "localhost:5201". Endpoints with user info, a
// path, a query or a fragment are rejected.
func NormalizePDSHost(endpoint string, dev bool) (string, bool) {
	if len(endpoint) > 512 {
		return "", false
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", false
	}
	host := u.Host
	if p := u.Port(); u.Scheme == "https" && p == "443" || u.Scheme == "http" && p == "80" {
		host = strings.TrimSuffix(host, ":"+p)
	}
	name, err := syntax.NormalizeHost(host, dev)
	return name, err == nil
}
