package jetstream

import (
	"errors"
	"fmt"
	"testing"
)

func TestFilterWants(t *testing.T) {
	const alice, bob = "did:plc:alice", "did:web:bob.test"
	f := func(cols, dids []string, k evKind, did, col string, want bool) {
		t.Helper()
		fl, err := newFilter(cols, dids, 0)
		if err != nil {
			t.Fatalf("newFilter(%q, %q): %v", cols, dids, err)
		}
		if got := fl.wantsDID([]byte(did)) && fl.wantsCollection(k, []byte(col)); got != want {
			t.Errorf("cols %q dids %q: wants(%v, %s, %s) = %v, want %v", cols, dids, k, did, col, got, want)
		}
	}
	// No filter: everything.
	f(nil, nil, kindCommit, alice, "app.bsky.feed.post", true)
	f(nil, nil, kindIdentity, bob, "", true)
	// Exact collections.
	posts := []string{"app.bsky.feed.post"}
	f(posts, nil, kindCommit, alice, "app.bsky.feed.post", true)
	f(posts, nil, kindCommit, alice, "app.bsky.feed.like", false)
	f(posts, nil, kindCommit, alice, "app.bsky.feed.postgate", false)
	// Prefix wildcards match everything under the prefix, dot included.
	feed := []string{"app.bsky.feed.*"}
	f(feed, nil, kindCommit, alice, "app.bsky.feed.post", true)
	f(feed, nil, kindCommit, alice, "app.bsky.feed.like", true)
	f(feed, nil, kindCommit, alice, "app.bsky.feedx.post", false)
	f(feed, nil, kindCommit, alice, "app.bsky.graph.follow", false)
	f([]string{"app.*"}, nil, kindCommit, alice, "app.bsky.graph.follow", true)
	f([]string{"app.bsky.graph.follow", "app.bsky.feed.*"}, nil, kindCommit, alice, "app.bsky.graph.follow", true)
	// Identity and account events pass collection filters (Jetstream).
	f(posts, nil, kindIdentity, alice, "", true)
	f(feed, nil, kindAccount, alice, "", true)
	// DIDs apply to every kind.
	f(nil, []string{alice}, kindCommit, alice, "app.bsky.feed.post", true)
	f(nil, []string{alice}, kindCommit, bob, "app.bsky.feed.post", false)
	f(nil, []string{alice}, kindIdentity, bob, "", false)
	f(nil, []string{alice, bob}, kindAccount, bob, "", true)
	// Both: and.
	f(posts, []string{alice}, kindCommit, alice, "app.bsky.feed.like", false)
	f(posts, []string{alice}, kindCommit, bob, "app.bsky.feed.post", false)
	f(posts, []string{alice}, kindCommit, alice, "app.bsky.feed.post", true)
}

func TestFilterRefuses(t *testing.T) {
	f := func(name string, cols, dids []string) {
		t.Helper()
		if _, err := newFilter(cols, dids, 0); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: err = %v, want ErrOptions", name, err)
		}
	}
	f("bad NSID", []string{"not a collection"}, nil)
	f("bare star", []string{"*"}, nil)
	f("star without dot", []string{"app.bsky*"}, nil)
	f("bad DID", nil, []string{"alice"})
	many := make([]string, MaxWantedCollections+1)
	for i := range many {
		many[i] = fmt.Sprintf("app.bsky.c%d", i)
	}
	f("101 collections", many, nil)
	dids := make([]string, MaxWantedDIDs+1)
	for i := range dids {
		dids[i] = fmt.Sprintf("did:plc:%024d", i)
	}
	f("10,001 DIDs", nil, dids)
	// Exactly at the limits, and duplicates counted once, is fine.
	if _, err := newFilter(many[:MaxWantedCollections], dids[:MaxWantedDIDs], 0); err != nil {
		t.Errorf("at the limits: %v", err)
	}
	if _, err := newFilter(nil, append(dids[:MaxWantedDIDs:MaxWantedDIDs], dids[0]), 0); err != nil {
		t.Errorf("duplicate DID counted twice: %v", err)
	}
}

func TestParseMaxMessageBytes(t *testing.T) {
	for in, want := range map[string]int{"": 0, "100": 100, "-5": 0, "x": 0, "99999999999": 1<<32 - 1} {
		if got := parseMaxMessageBytes(in); got != want {
			t.Errorf("%q: %d, want %d", in, got, want)
		}
	}
}

func TestParseCursor(t *testing.T) {
	f := func(in string, kind cursorKind, v int64, ok bool) {
		t.Helper()
		k, n, err := parseCursor(in)
		if (err == nil) != ok || (ok && (k != kind || n != v)) {
			t.Errorf("%q: (%v, %d, %v), want (%v, %d, ok=%v)", in, k, n, err, kind, v, ok)
		}
	}
	f("", cursorNone, 0, true)
	f("0", cursorSeq, 0, true)
	f("-3", cursorSeq, 0, true)
	f("12345", cursorSeq, 12345, true)
	f("999999999999999", cursorSeq, 999_999_999_999_999, true)
	f("1000000000000000", cursorTime, 1_000_000_000_000_000, true)
	f("1764109077806000", cursorTime, 1_764_109_077_806_000, true)
	f("abc", 0, 0, false)
	f("99999999999999999999", 0, 0, false)
}
