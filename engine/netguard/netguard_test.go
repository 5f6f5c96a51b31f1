package netguard

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	f := func(addr string, want Class) {
		t.Helper()
		ip, err := netip.ParseAddr(addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := Classify(ip); got != want {
			t.Errorf("Classify(%s) = %s, want %s", addr, got, want)
		}
	}
	// Public.
	f("1.1.1.1", Public)
	f("8.8.8.8", Public)
	f("100.63.255.255", Public) // just below CGNAT
	f("100.128.0.0", Public)    // just above CGNAT
	f("172.15.255.255", Public)
	f("172.32.0.0", Public)
	f("2606:4700:4700::1111", Public)
	f("::ffff:1.1.1.1", Public)
	f("64:ff9b::101:101", Public) // NAT64 of 1.1.1.1 (DNS64 networks)
	f("2002:101:101::1", Public)  // 6to4 of 1.1.1.1
	// Loopback, in every dress.
	f("127.0.0.1", Loopback)
	f("127.255.255.254", Loopback)
	f("::1", Loopback)
	f("::ffff:127.0.0.1", Loopback)
	f("64:ff9b::7f00:1", Loopback)
	f("2002:7f00:1::", Loopback)
	// Private: RFC 1918, CGNAT, unique-local.
	f("10.0.0.1", Private)
	f("172.16.0.1", Private)
	f("172.31.255.255", Private)
	f("192.168.1.1", Private)
	f("100.64.0.1", Private)
	f("100.127.255.255", Private)
	f("fc00::1", Private)
	f("fd12:3456::1", Private)
	f("::ffff:10.1.2.3", Private)
	f("::ffff:100.64.0.1", Private)
	f("64:ff9b::c0a8:101", Private) // NAT64 of 192.168.1.1
	f("64:ff9b:1::a00:1", Private)  // local-use NAT64 prefix
	f("2002:c0a8:101::1", Private)  // 6to4 of 192.168.1.1
	// Link-local (cloud metadata).
	f("169.254.169.254", LinkLocal)
	f("::ffff:169.254.169.254", LinkLocal)
	f("fe80::1", LinkLocal)
	f("fe80::1%eth0", LinkLocal)
	// Special.
	f("0.0.0.0", Special)
	f("0.1.2.3", Special)
	f("::", Special)
	f("::ffff:0.0.0.0", Special)
	f("::127.0.0.1", Special) // deprecated IPv4-compatible
	f("224.0.0.1", Special)
	f("239.255.255.250", Special)
	f("255.255.255.255", Special)
	f("240.0.0.1", Special)
	f("192.0.2.1", Special)
	f("198.18.0.1", Special)
	f("198.51.100.7", Special)
	f("203.0.113.9", Special)
	f("192.0.0.8", Special)
	f("ff02::1", Special)
	f("ff05::2", Special)
	f("2001:db8::1", Special)
	f("100::1", Special)  // discard-only
	f("fec0::1", Special) // deprecated site-local
	if got := Classify(netip.Addr{}); got != Special {
		t.Errorf("Classify(zero Addr) = %s, want special", got)
	}
}

func TestPolicyAllows(t *testing.T) {
	f := func(p Policy, addr string, want bool) {
		t.Helper()
		if got := p.Allows(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%+v.Allows(%s) = %v, want %v", p, addr, got, want)
		}
	}
	none, lo, priv, both := Policy{}, Policy{AllowLoopback: true}, Policy{AllowPrivate: true}, Policy{true, true}
	f(none, "1.1.1.1", true)
	f(none, "127.0.0.1", false)
	f(none, "10.0.0.1", false)
	f(lo, "127.0.0.1", true)
	f(lo, "::ffff:127.0.0.1", true)
	f(lo, "::1", true)
	f(lo, "10.0.0.1", false)
	f(lo, "fd00::1", false)
	f(priv, "10.0.0.1", true)
	f(priv, "127.0.0.1", false)
	for _, p := range []Policy{none, lo, priv, both} {
		f(p, "169.254.169.254", false)
		f(p, "0.0.0.0", false)
		f(p, "::", false)
		f(p, "224.0.0.1", false)
		f(p, "8.8.4.4", true)
	}
}

func TestControlUnparsable(t *testing.T) {
	for _, addr := range []string{"", "localhost:80", "127.0.0.1", "[::1]"} {
		if err := (Policy{AllowLoopback: true}).Control("tcp", addr, nil); !errors.Is(err, ErrRefused) {
			t.Errorf("Control(%q) = %v, want ErrRefused", addr, err)
		}
	}
}

// TestLoopbackDial runs a server on 127.0.0.1: a client without
// AllowLoopback is refused before any byte is sent, by IP and by the name
// localhost (checked after resolution); with AllowLoopback it gets the
// answer. A private destination stays refused under AllowLoopback (Control
// runs before connect, so no packet leaves).
func TestLoopbackDial(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	port := strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)

	get := func(c *http.Client, url string) (string, error) {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	strict := NewClient(Options{Timeout: 5 * time.Second})
	for _, url := range []string{srv.URL, "http://localhost:" + port} {
		if _, err := get(strict, url); !errors.Is(err, ErrRefused) {
			t.Fatalf("GET %s without AllowLoopback: %v, want ErrRefused", url, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("server saw %d requests from a refused client", n)
	}

	dev := NewClient(Options{Policy: Policy{AllowLoopback: true}, Timeout: 5 * time.Second})
	body, err := get(dev, srv.URL)
	if err != nil || body != "ok" || hits.Load() != 1 {
		t.Fatalf("GET with AllowLoopback: %q, %v, %d hits", body, err, hits.Load())
	}

	d := &net.Dialer{Timeout: time.Second, Control: Policy{AllowLoopback: true}.Control}
	if _, err := d.DialContext(context.Background(), "tcp", "10.255.255.1:80"); !errors.Is(err, ErrRefused) {
		t.Fatalf("dial 10.255.255.1 with AllowLoopback: %v, want ErrRefused", err)
	}
}

// TestClientBounds checks NewClient's limits against a hostile loopback
// server: an endless header is cut at MaxResponseHeaderBytes, redirects
// are not followed, and a gzip body is not inflated.
func TestClientBounds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big-header":
			w.Header().Set("X-Junk", string(make([]byte, 64<<10)))
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		case "/gzip":
			if r.Header.Get("Accept-Encoding") != "" {
				t.Errorf("client asked for %q", r.Header.Get("Accept-Encoding"))
			}
			w.Header().Set("Content-Encoding", "gzip")
		}
		_, _ = io.WriteString(w, "body")
	}))
	defer srv.Close()
	c := NewClient(Options{Policy: Policy{AllowLoopback: true}, MaxResponseHeaderBytes: 4 << 10, Timeout: 5 * time.Second})
	if _, err := c.Get(srv.URL + "/big-header"); err == nil {
		t.Fatal("64 KiB header accepted with a 4 KiB limit")
	}
	resp, err := c.Get(srv.URL + "/redirect")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("redirect: status %d, want 302 returned as is", resp.StatusCode)
	}
	resp, err = c.Get(srv.URL + "/gzip")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "body" || resp.Uncompressed {
		t.Fatalf("gzip: body %q, uncompressed %v", b, resp.Uncompressed)
	}
}
