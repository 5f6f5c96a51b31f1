// Package clientip names the remote party behind a public HTTP request, for
// the per-client limits of the public API (requestCrawl, firehose
// consumers, Jetstream subscribers): who the client is (Policy.Addr), which
// clients share one limit (Key), a bounded table of per-client token
// buckets (Limiter), the connection slots of a streaming endpoint, in
// total and per client (Admission), and the same for the connections an
// HTTP server holds before an endpoint takes them over (ConnLimiter).
//
// A client is the TCP peer address unless that peer is a trusted reverse
// proxy, in which case it is the last X-Forwarded-For entry not written by a
// trusted proxy. With no trusted proxies configured the header is ignored:
// anyone can write it.
package clientip

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Policy says which peers may name the client in X-Forwarded-For. The zero
// Policy trusts nobody. Static after construction; safe for concurrent use.
type Policy struct {
	// TrustedProxies are the networks of reverse proxies whose
	// X-Forwarded-For is believed (for example 127.0.0.1/32 and ::1/128
	// when Caddy or nginx runs on the same machine).
	TrustedProxies []netip.Prefix
}

// Addr returns the client address of r: the peer address, or, when the
// peer is a trusted proxy, the rightmost X-Forwarded-For address that is
// not itself a trusted proxy (entries left of it were written by the
// client and prove nothing). The zero Addr when the peer address does not
// parse (not a TCP peer).
func (p Policy) Addr(r *http.Request) netip.Addr {
	peer := parse(r.RemoteAddr)
	if !peer.IsValid() || !p.trusted(peer) {
		return peer
	}
	hops := r.Header.Values("X-Forwarded-For")
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		list := hops[i]
		for list != "" {
			var hop string
			if k := strings.LastIndexByte(list, ','); k >= 0 {
				list, hop = list[:k], list[k+1:]
			} else {
				list, hop = "", list
			}
			a := parse(strings.TrimSpace(hop))
			if !a.IsValid() {
				// Garbage left of a trusted hop: the client wrote it.
				return client
			}
			client = a
			if !p.trusted(a) {
				return client
			}
		}
	}
	return client
}

func (p Policy) trusted(a netip.Addr) bool {
	for _, n := range p.TrustedProxies {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// parse reads "ip", "ip:port" or "[ip]:port", dropping an IPv6 zone and
// unmapping IPv4-in-IPv6.
func parse(s string) netip.Addr {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.WithZone("").Unmap()
}

// Key returns the limit key of a client address: an IPv4 address itself,
// an IPv6 address's /64, since one subscriber commonly holds a whole /64
// and could otherwise take a fresh limit per address.
func Key(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}
