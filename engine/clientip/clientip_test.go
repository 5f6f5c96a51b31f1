package clientip

import (
	"net/http"
	"net/netip"
	"testing"
	"time"
)

func TestPolicyAddr(t *testing.T) {
	loopback := Policy{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
	f := func(name string, p Policy, remote string, xff []string, want string) {
		t.Helper()
		r := &http.Request{RemoteAddr: remote, Header: http.Header{}}
		for _, v := range xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		got := p.Addr(r)
		if (want == "" && got.IsValid()) || (want != "" && got != netip.MustParseAddr(want)) {
			t.Errorf("%s: Addr = %v, want %q", name, got, want)
		}
	}
	f("peer, no proxies", Policy{}, "203.0.113.7:5555", nil, "203.0.113.7")
	f("header ignored without trust", Policy{}, "203.0.113.7:5555", []string{"198.51.100.1"}, "203.0.113.7")
	f("untrusted peer's header ignored", loopback, "203.0.113.7:5555", []string{"198.51.100.1"}, "203.0.113.7")
	f("trusted proxy names client", loopback, "127.0.0.1:4000", []string{"198.51.100.1"}, "198.51.100.1")
	f("rightmost untrusted wins", loopback, "127.0.0.1:4000", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1")
	f("chain of trusted hops", loopback, "127.0.0.1:4000", []string{"198.51.100.1, 127.0.0.2", "::1"}, "198.51.100.1")
	f("garbage stops the walk", loopback, "127.0.0.1:4000", []string{"nonsense, 127.0.0.2"}, "127.0.0.2")
	f("no header: the proxy", loopback, "[::1]:4000", nil, "::1")
	f("ipv4-mapped unmapped", Policy{}, "[::ffff:203.0.113.7]:1", nil, "203.0.113.7")
	f("unparsable peer", Policy{}, "@unix", nil, "")
}

func TestKey(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := Key(netip.MustParseAddr(in)); got != netip.MustParseAddr(want) {
			t.Errorf("Key(%s) = %v, want %s", in, got, want)
		}
	}
	f("203.0.113.7", "203.0.113.7")
	f("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::")
	f("2001:db8:1:2::1", "2001:db8:1:2::")
}

func TestLimiter(t *testing.T) {
	l := NewLimiter(6, 3, 100) // one token every 10 s
	a := netip.MustParseAddr("203.0.113.7")
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 3 {
		if !l.Allow(a, t0) {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	if l.Allow(a, t0.Add(time.Second)) {
		t.Fatal("request beyond the burst allowed")
	}
	if !l.Allow(netip.MustParseAddr("203.0.113.8"), t0) {
		t.Fatal("another client refused")
	}
	if !l.Allow(a, t0.Add(11*time.Second)) {
		t.Fatal("refilled token refused")
	}
	if l.Allow(a, t0.Add(12*time.Second)) {
		t.Fatal("second token after one refill allowed")
	}
}

// TestLimiterBounded checks the table never exceeds its bound, and that a
// full table forgets refilled clients before a client still limited.
func TestLimiterBounded(t *testing.T) {
	const maxClients = 64
	t0 := time.Unix(1_800_000_000, 0)
	l := NewLimiter(1, 2, maxClients)
	for i := range maxClients - 1 {
		l.Allow(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), t0.Add(-5*time.Minute)) // full again by t0
	}
	hot := netip.MustParseAddr("203.0.113.7")
	if !l.Allow(hot, t0) || !l.Allow(hot, t0) {
		t.Fatal("burst refused")
	}
	if !l.Allow(netip.MustParseAddr("203.0.113.8"), t0) {
		t.Fatal("newcomer refused")
	}
	if n := l.Len(); n != 2 {
		t.Fatalf("after the sweep the table holds %d clients, want the 2 still limited", n)
	}
	if l.Allow(hot, t0) {
		t.Fatal("the sweep forgot a limited client")
	}
	for i := range 10 * maxClients {
		l.Allow(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), t0) // all limited: arbitrary eviction
		if n := l.Len(); n > maxClients {
			t.Fatalf("table holds %d clients, bound %d", n, maxClients)
		}
	}
}
