package syntax

import (
	"errors"
	"strings"
	"testing"
)

// TestNormalizeHost carries the cases of the three normalizers it replaced
// (relay.NormalizeHostname for requestCrawl, identity.NormalizePDSHost for
// #atproto_pds endpoints, upstream's dial check), under the one rule set.
func TestNormalizeHost(t *testing.T) {
	f := func(in string, dev bool, want string, wantErr error) {
		t.Helper()
		got, err := NormalizeHost(in, dev)
		if err != wantErr || got != want {
			t.Errorf("NormalizeHost(%q, %v) = %q, %v; want %q, %v", in, dev, got, err, want, wantErr)
		}
		if err == nil {
			// The stored form is a fixed point: normalizing it again (as a
			// dial or a comparison does) gives the same string.
			if again, err := NormalizeHost(got, dev); again != got || err != nil {
				t.Errorf("NormalizeHost(%q, %v) = %q, %v; not a fixed point", got, dev, again, err)
			}
		}
	}
	// Ordinary hosts, any mode.
	for _, dev := range []bool{false, true} {
		f("PDS.Example.com", dev, "pds.example.com", nil)
		f("https://pds.example.com/", dev, "pds.example.com", nil)
		f("wss://pds.example.com", dev, "pds.example.com", nil)
		f("https://PDS.Example.com/", dev, "pds.example.com", nil)
		f("  pds.example.com\n", dev, "pds.example.com", nil)
		f("a.b", dev, "a.b", nil)
		f("xn--bcher-kva.example", dev, "xn--bcher-kva.example", nil)
		f(strings.Repeat("a", 63)+".com", dev, strings.Repeat("a", 63)+".com", nil)
		f(strings.Repeat("a.", 125)+"com", dev, strings.Repeat("a.", 125)+"com", nil) // 253 bytes
	}
	// Malformed, any mode.
	for _, dev := range []bool{false, true} {
		f("", dev, "", ErrHostEmpty)
		f("https://", dev, "", ErrHostEmpty)
		f("/", dev, "", ErrHostEmpty)
		f(strings.Repeat("a.", 126)+"co", dev, "", ErrHostTooLong)
		f(string(make([]byte, 254)), dev, "", ErrHostTooLong)
		f(strings.Repeat("a", 5000), dev, "", ErrHostTooLong)
		f("ftp://pds.example.com", dev, "", ErrHostScheme)
		f("javascript://pds.example.com", dev, "", ErrHostScheme)
		f("example", dev, "", ErrHostTooFewLabels)
		f("2130706433", dev, "", ErrHostTooFewLabels)
		f("a..b", dev, "", ErrHostLabel)
		f(".a.b", dev, "", ErrHostLabel)
		f("pds.example.com.", dev, "", ErrHostLabel)
		f("-x.example.com", dev, "", ErrHostLabel)
		f("x-.example.com", dev, "", ErrHostLabel)
		f(strings.Repeat("a", 64)+".com", dev, "", ErrHostLabel)
		f("a/b", dev, "", ErrHostChar)
		f("a b", dev, "", ErrHostChar)
		f("a?cursor=1", dev, "", ErrHostChar)
		f("https://pds.example.com/xrpc", dev, "", ErrHostChar)
		f("https://user@pds.example.com", dev, "", ErrHostChar)
		f("https://pds.example.com?x=1", dev, "", ErrHostChar)
		f("https://pds.example.com#f", dev, "", ErrHostChar)
		f("https://bad_host.com", dev, "", ErrHostChar)
		f("pds.example.com//", dev, "", ErrHostChar)
		f("[pds.example.com]", dev, "", ErrHostChar)
		f("::1", dev, "", ErrHostChar)
		f("example.123", dev, "", ErrHostTLDLeadsDigit)
		f("0x7f.1", dev, "", ErrHostTLDLeadsDigit)
		f("127.1", dev, "", ErrHostTLDLeadsDigit)
		f("localhost:0", dev, "", ErrHostPort)
		f("localhost:065", dev, "", ErrHostPort)
		f("localhost:99999", dev, "", ErrHostPort)
		f("localhost:+80", dev, "", ErrHostPort)
		f("localhost:", dev, "", ErrHostPort)
		f("10.0.0.1", dev, "", ErrHostIP)
		f("8.8.8.8:443", dev, "", ErrHostIP)
		f("[2606:4700::1111]", dev, "", ErrHostIP)
		f("[fe80::1%eth0]:80", dev, "", ErrHostIP)
		f("[::ffff:127.0.0.1]:80", dev, "", ErrHostIP)
		f("-x.localhost:2583", dev, "", ErrHostLabel)
	}
	// Development hosts: refused without the switch.
	f("http://pds.example.com", false, "", ErrHostDevOnly)
	f("ws://pds.example.com", false, "", ErrHostDevOnly)
	f("pds.example.com:443", false, "", ErrHostDevOnly)
	f("localhost", false, "", ErrHostDevOnly)
	f("localhost:2583", false, "", ErrHostDevOnly)
	f("http://localhost:5201", false, "", ErrHostDevOnly)
	f("pds-1.localhost", false, "", ErrHostDevOnly)
	f("pds-1.localhost:2583", false, "", ErrHostDevOnly)
	f("127.0.0.1", false, "", ErrHostDevOnly)
	f("http://127.0.0.1:2583", false, "", ErrHostDevOnly)
	f("[::1]:2583", false, "", ErrHostDevOnly)
	// ... and accepted with it.
	f("http://pds.example.com", true, "pds.example.com", nil)
	f("localhost", true, "localhost", nil)
	f("http://localhost", true, "localhost", nil)
	f("http://localhost:0", true, "", ErrHostPort)
	f("localhost:2583", true, "localhost:2583", nil)
	f("ws://localhost:2583", true, "localhost:2583", nil)
	f("http://localhost:5201", true, "localhost:5201", nil)
	f("pds-1.localhost:2583", true, "pds-1.localhost:2583", nil)
	f("wss://PDS-1.localhost:2583", true, "pds-1.localhost:2583", nil)
	f("https://pds-1.localhost:5201", true, "pds-1.localhost:5201", nil)
	f("127.0.0.1", true, "127.0.0.1", nil)
	f("http://127.0.0.1:2583", true, "127.0.0.1:2583", nil)
	f("127.0.0.2:80", true, "127.0.0.2:80", nil)
	f("[::1]:2583", true, "[::1]:2583", nil)
	f("[0:0::1]", true, "[::1]", nil)
	// A port names a development host only: an ordinary name keeps its
	// default port, so "pds.example.com:8443" never passes for
	// "pds.example.com" in the authority check.
	f("pds.example.com:443", true, "", ErrHostPortNotDev)
	f("https://pds.example.com:8443", true, "", ErrHostPortNotDev)
}

func TestNormalizeHostErrorsAreReasons(t *testing.T) {
	_, err := NormalizeHost("a..b", false)
	var e Error
	if !errors.As(err, &e) || e != ErrHostLabel {
		t.Fatalf("err %v is not the Error reason ErrHostLabel", err)
	}
}

func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{
		"pds.example.com", "HTTPS://PDS.example.com/", "localhost:2583", "ws://pds-1.localhost:1",
		"[::1]:80", "127.0.0.1", "10.0.0.1", "a..b", "http://x.y/z", "[", "]:1", ":", "",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, dev bool) {
		got, err := NormalizeHost(s, dev)
		if err != nil {
			if got != "" {
				t.Fatalf("NormalizeHost(%q) = %q with error %v", s, got, err)
			}
			return
		}
		if len(got) == 0 || len(got) > MaxHostLen {
			t.Fatalf("NormalizeHost(%q) = %q: length %d", s, got, len(got))
		}
		if again, err := NormalizeHost(got, dev); again != got || err != nil {
			t.Fatalf("NormalizeHost(%q) = %q, again %q %v", s, got, again, err)
		}
		if !dev {
			if _, err := NormalizeHost(got, true); err != nil {
				t.Fatalf("%q accepted without the switch but refused with it: %v", got, err)
			}
		}
	})
}

func TestPlaintextHost(t *testing.T) {
	f := func(host string, want bool) {
		t.Helper()
		if got := PlaintextHost(host); got != want {
			t.Errorf("PlaintextHost(%q) = %v, want %v", host, got, want)
		}
	}
	f("localhost", true)
	f("localhost:2583", true)
	f("LOCALHOST:1", true)
	f("127.0.0.1", true)
	f("127.0.0.1:8080", true)
	f("[::1]", true)
	f("[::1]:8080", true)
	f("pds-1.localhost:2583", false) // TLS test fleet
	f("pds.example.com", false)
	f("pds.example.com:8443", false)
	f("10.0.0.1:80", false)
	f("::1", false)
	f("", false)
}
