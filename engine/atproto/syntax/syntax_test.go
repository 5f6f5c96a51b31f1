package syntax

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDIDReasons(t *testing.T) {
	f := func(s string, want error) {
		t.Helper()
		if err := CheckDID([]byte(s)); err != want {
			t.Fatalf("CheckDID(%q) = %v, want %v", s, err, want)
		}
	}
	f("", ErrDIDEmpty)
	f("did:x:"+strings.Repeat("a", MaxDIDLen), ErrDIDTooLong)
	f("did:x:"+strings.Repeat("a", MaxDIDLen-6), nil)
	f("DID:plc:abc", ErrDIDPrefix)
	f("did:m123:val", ErrDIDMethod)
	f("did::val", ErrDIDMethod)
	f("did:plc", ErrDIDMethod)
	f("did:plc:", ErrDIDIdentifierEmpty)
	f("did:plc:a/b", ErrDIDChar)
	f("did:plc:ab:", ErrDIDTrailing)
	f("did:plc:ab%", ErrDIDTrailing)
	f("did:plc:ab%4", ErrDIDPercent)
	f("did:plc:ab%zz", ErrDIDPercent)
	f("did:plc:ab%4a:", ErrDIDTrailing)
	f("did:web:localhost%3A1234", nil)
}

func TestBlessedDID(t *testing.T) {
	f := func(s string, want error) {
		t.Helper()
		if err := CheckBlessedDID([]byte(s)); err != want {
			t.Fatalf("CheckBlessedDID(%q) = %v, want %v", s, err, want)
		}
	}
	f("did:plc:7iza6de2dwap2sbkpav7c6c6", nil)
	f("did:plc:7iza6de2dwap2sbkpav7c6c", ErrDIDPLCIdentifier)
	f("did:plc:7IZA6de2dwap2sbkpav7c6c6", ErrDIDPLCIdentifier)
	f("did:plc:7iza6de2dwap2sbkpav7c6c1", ErrDIDPLCIdentifier)
	f("did:web:example.com", nil)
	f("did:web:Example.com", ErrDIDWebHost)
	f("did:web:example.com:path", ErrDIDWebHost)
	f("did:web:example", ErrDIDWebHost)
	f("did:web:localhost", nil)
	f("did:web:localhost%3A1234", nil)
	f("did:web:localhost%3a1234", nil)
	f("did:web:localhost%3A", ErrDIDWebHost)
	f("did:web:localhost%3A123456", ErrDIDWebHost)
	f("did:web:example.com%3A1234", ErrDIDWebHost)
	f("did:key:zQ3shZc2QzApp2oymGvQbzP8eKheVshBHbU4ZYjeXqwSKEn6N", ErrDIDUnsupportedMethod)
	f("did:plc", ErrDIDMethod)
}

func TestDIDParts(t *testing.T) {
	d, err := ParseDID("did:web:example.com")
	if err != nil {
		t.Fatal(err)
	}
	if d.Method() != "web" || d.Identifier() != "example.com" || d.String() != "did:web:example.com" {
		t.Fatalf("parts of %s: %q %q", d, d.Method(), d.Identifier())
	}
	if DID("nope").Method() != "" || DID("nope").Identifier() != "" {
		t.Fatal("invalid DID must have no parts")
	}
}

func TestHandleHelpers(t *testing.T) {
	if got := Handle("John.Bsky.APP").Normalize(); got != "john.bsky.app" {
		t.Fatalf("Normalize = %q", got)
	}
	f := func(h string, want bool) {
		t.Helper()
		if got := Handle(h).HasDisallowedTLD(); got != want {
			t.Fatalf("HasDisallowedTLD(%q) = %v", h, got)
		}
	}
	f("laptop.local", true)
	f("x.ONION", true)
	f(string(HandleInvalid), true)
	f("john.test", false)
	f("alt.com", false)
}

func TestNSIDParts(t *testing.T) {
	n, err := ParseNSID("app.bsky.feed.post")
	if err != nil {
		t.Fatal(err)
	}
	if n.Authority() != "app.bsky.feed" || n.Name() != "post" {
		t.Fatalf("parts: %q %q", n.Authority(), n.Name())
	}
}

func TestRepoPath(t *testing.T) {
	f := func(s string, want error) {
		t.Helper()
		c, r, err := SplitRepoPath([]byte(s))
		if err != want {
			t.Fatalf("SplitRepoPath(%q) = %v, want %v", s, err, want)
		}
		if err == nil && string(c)+"/"+string(r) != s {
			t.Fatalf("SplitRepoPath(%q) = %q, %q", s, c, r)
		}
	}
	f("app.bsky.feed.post/3lmxrbvasth2t", nil)
	f("app.bsky.actor.profile/self", nil)
	f("com.example.thing/pre:fix", nil)
	f("", ErrRepoPathSlash)
	f("app.bsky.feed.post", ErrRepoPathSlash)
	f("/app.bsky.feed.post/x", ErrRepoPathSlash)
	f("app.bsky.feed.post/a/b", ErrRepoPathSlash)
	f("app.bsky.feed.post/", ErrRecordKeyEmpty)
	f("app.bsky.feed.post/..", ErrRecordKeyDots)
	f("app.bsky/x", ErrNSIDTooFewSegments)
	f("app.bsky.feed.post/"+strings.Repeat("a", 1100), ErrRepoPathTooLong)
	if err := CheckRepoPath([]byte("a.b.c/x y")); err != ErrRecordKeyChar {
		t.Fatalf("CheckRepoPath = %v", err)
	}
}

func TestParseDatetimeValues(t *testing.T) {
	f := func(s string, want time.Time) {
		t.Helper()
		got, err := ParseDatetime([]byte(s))
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Fatalf("ParseDatetime(%q) = %v, %v, want %v", s, got, err, want)
		}
		if !Datetime(s).Time().Equal(want) {
			t.Fatalf("Datetime(%q).Time() = %v", s, Datetime(s).Time())
		}
	}
	f("1985-04-12T23:20:50.123Z", time.Date(1985, 4, 12, 23, 20, 50, 123e6, time.UTC))
	f("1985-04-12T23:20:50.123-07:00", time.Date(1985, 4, 13, 6, 20, 50, 123e6, time.UTC))
	f("1985-04-12T23:20:50.1235678912345Z", time.Date(1985, 4, 12, 23, 20, 50, 123567891, time.UTC))
	f("2024-02-29T00:00:00Z", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC))
	f("0000-01-01T00:00:00.000Z", time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC))
	g := func(s string, want error) {
		t.Helper()
		if _, err := ParseDatetime([]byte(s)); err != want {
			t.Fatalf("ParseDatetime(%q) = %v, want %v", s, err, want)
		}
	}
	g("", ErrDatetimeEmpty)
	g("2023-02-29T00:00:00Z", ErrDatetimeDay)
	g("1900-02-29T00:00:00Z", ErrDatetimeDay)
	g("1985-04-31T00:00:00Z", ErrDatetimeDay)
	g("1985-04-12T23:20:60Z", ErrDatetimeSecond)
	g("1985-04-12T23:20:50+24:00", ErrDatetimeOffset)
	g("1985-04-12T23:20:50-00:00", ErrDatetimeNegZero)
	g("0000-01-01T00:00:00+01:00", ErrDatetimeNegative)
	g("1985-04-12T23:20:50.123"+strings.Repeat("4", 50)+"Z", ErrDatetimeTooLong)
}

func TestAppendDatetime(t *testing.T) {
	ts := time.Date(2025, 4, 16, 16, 40, 33, 895123456, time.FixedZone("x", -7*3600))
	if got := string(AppendDatetime(nil, ts)); got != "2025-04-16T23:40:33.895Z" {
		t.Fatalf("AppendDatetime = %q", got)
	}
	if _, err := ParseDatetimeString(string(AppendDatetime(nil, ts))); err != nil {
		t.Fatal(err)
	}
}

func TestErrorsAreDistinctValues(t *testing.T) {
	var err error = ErrDIDTooLong
	if !errors.Is(err, ErrDIDTooLong) || errors.Is(err, ErrDIDChar) {
		t.Fatal("errors.Is must match only the same reason")
	}
}
