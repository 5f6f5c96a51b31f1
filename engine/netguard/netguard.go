// Package netguard keeps outbound HTTP clients that fetch from
// internet-supplied names (DID documents, did:web hosts, requestCrawl's
// describeServer probe) from reaching anything but public unicast
// addresses: no loopback, private, link-local (cloud metadata at
// 169.254.169.254), carrier-grade NAT, multicast or reserved destination.
//
// The check runs in net.Dialer.Control, that is on the address the socket
// is about to connect to, after DNS resolution, for every address the
// dialer tries. A name that resolves to a public address for a first check
// and to 127.0.0.1 for the connection (DNS rebinding) is therefore still
// refused, and so are IPv4 addresses dressed as IPv6 (::ffff:127.0.0.1,
// NAT64 64:ff9b::7f00:1, 6to4 2002:7f00:1::).
//
// The surface is three things: Classify (what an address is), Policy (which
// classes beyond Public a dialer may reach, and its Control function), and
// NewTransport/NewClient (an HTTP client with that dialer and bounded
// waits). A Policy is a value; everything here is safe for concurrent use.
package netguard

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// Class is the kind of destination an IP address is, as far as reaching it
// from the relay is concerned.
type Class uint8

// The classes, from harmless to never allowed.
const (
	// Public is global unicast: the internet.
	Public Class = iota
	// Loopback is 127.0.0.0/8 and ::1: this machine.
	Loopback
	// Private is what a local network uses: RFC 1918 (10/8, 172.16/12,
	// 192.168/16), carrier-grade NAT (100.64/10, RFC 6598) and IPv6
	// unique-local (fc00::/7).
	Private
	// LinkLocal is 169.254/16 and fe80::/10, where cloud metadata
	// services live. Never allowed.
	LinkLocal
	// Special is everything else that is not a unicast internet host:
	// unspecified and "this network" (0/8, ::; connecting to 0.0.0.0
	// reaches loopback on Linux), multicast, broadcast, reserved (240/4),
	// documentation, benchmarking and protocol-assignment ranges, IPv6
	// outside 2000::/3, and invalid addresses. Never allowed.
	Special
)

// String returns the class name used in errors.
func (c Class) String() string {
	switch c {
	case Public:
		return "public"
	case Loopback:
		return "loopback"
	case Private:
		return "private"
	case LinkLocal:
		return "link-local"
	}
	return "special"
}

// v4Special lists the IPv4 ranges beyond loopback, private and link-local
// that no public host lives in (IANA IPv4 Special-Purpose Address
// Registry).
var v4Special = [...]netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network", includes unspecified
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("192.88.99.0/24"),  // deprecated 6to4 relay anycast
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, includes broadcast
}

var (
	cgnat     = netip.MustParsePrefix("100.64.0.0/10")
	v6Global  = netip.MustParsePrefix("2000::/3")
	v6Doc     = netip.MustParsePrefix("2001:db8::/32")
	v6Compat  = netip.MustParsePrefix("::/96")          // deprecated IPv4-compatible
	nat64     = netip.MustParsePrefix("64:ff9b::/96")   // RFC 6052 well-known NAT64
	nat64Site = netip.MustParsePrefix("64:ff9b:1::/48") // RFC 8215 local-use NAT64
	sixToFour = netip.MustParsePrefix("2002::/16")      // 6to4, IPv4 in bits 16-47
)

// Classify returns the class of ip. IPv6 forms that carry an IPv4 address
// a packet may end up at (IPv4-mapped, IPv4-compatible, well-known NAT64,
// 6to4) are classified by that IPv4 address, so ::ffff:10.0.0.1 is
// Private. A zone (fe80::1%eth0) does not change the class.
func Classify(ip netip.Addr) Class {
	if !ip.IsValid() {
		return Special
	}
	ip = ip.WithZone("")
	if ip.Is4In6() {
		return classify4(ip.Unmap())
	}
	if ip.Is4() {
		return classify4(ip)
	}
	switch {
	case ip.IsLoopback():
		return Loopback
	case ip.IsLinkLocalUnicast():
		return LinkLocal
	case ip.IsPrivate():
		return Private
	case nat64.Contains(ip):
		b := ip.As16()
		return classify4(netip.AddrFrom4([4]byte(b[12:16])))
	case nat64Site.Contains(ip):
		// A site's own NAT64 prefix translates to whatever it routes,
		// its private networks included.
		return Private
	case v6Compat.Contains(ip):
		// ::/96 holds the unspecified address and the deprecated
		// IPv4-compatible form; no public host is reached that way.
		return Special
	case sixToFour.Contains(ip):
		b := ip.As16()
		return classify4(netip.AddrFrom4([4]byte(b[2:6])))
	case !v6Global.Contains(ip) || v6Doc.Contains(ip):
		return Special
	}
	return Public
}

func classify4(ip netip.Addr) Class {
	switch {
	case ip.IsLoopback():
		return Loopback
	case ip.IsLinkLocalUnicast():
		return LinkLocal
	case ip.IsPrivate() || cgnat.Contains(ip):
		return Private
	}
	for _, p := range v4Special {
		if p.Contains(ip) {
			return Special
		}
	}
	return Public
}

// ErrRefused is returned (wrapped, naming the address and its class) for a
// dial to a destination the Policy does not allow. Through an http.Client
// it arrives inside a *url.Error: test with errors.Is.
var ErrRefused = errors.New("netguard: destination address not allowed")

// Policy says which classes beyond Public a dialer may reach. The zero
// Policy allows public addresses only, which is what anything dialing a
// name taken from the internet wants. LinkLocal and Special are never
// allowed.
type Policy struct {
	// AllowLoopback permits Loopback: the development switch, for fleets
	// and fake servers on 127.0.0.1. It does not permit Private.
	AllowLoopback bool
	// AllowPrivate permits Private: for a server the operator runs on
	// the local network (a PLC mirror, say), never for names from the
	// internet.
	AllowPrivate bool
}

// Allows reports whether p permits dialing ip.
func (p Policy) Allows(ip netip.Addr) bool {
	switch Classify(ip) {
	case Public:
		return true
	case Loopback:
		return p.AllowLoopback
	case Private:
		return p.AllowPrivate
	}
	return false
}

// Control is a net.Dialer.Control function enforcing p: address is the
// "ip:port" the dialer is about to connect to, already resolved. Anything
// that does not parse as one is refused.
func (p Policy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s %q does not parse", ErrRefused, network, address)
	}
	if !p.Allows(ap.Addr()) {
		return fmt.Errorf("%w: %s is %s", ErrRefused, ap.Addr(), Classify(ap.Addr()))
	}
	return nil
}
