package syntax

import "testing"

// TestNoAllocs pins every []byte validator at zero allocations on valid and
// invalid input: they run on fields aliasing frame buffers.
func TestNoAllocs(t *testing.T) {
	cases := []struct {
		name string
		fn   func([]byte) error
		in   []string
	}{
		{"CheckDID", CheckDID, []string{"did:plc:7iza6de2dwap2sbkpav7c6c6", "did:web:localhost%3A1234", "DID:x"}},
		{"CheckBlessedDID", CheckBlessedDID, []string{"did:plc:7iza6de2dwap2sbkpav7c6c6", "did:web:example.com", "did:key:z"}},
		{"CheckHandle", CheckHandle, []string{"john.bsky.social", "john..test"}},
		{"CheckNSID", CheckNSID, []string{"app.bsky.feed.post", "a.b"}},
		{"CheckRecordKey", CheckRecordKey, []string{"3lmxrbvasth2t", ".."}},
		{"CheckRepoPath", CheckRepoPath, []string{"app.bsky.feed.post/3lmxrbvasth2t", "x/y/z"}},
		{"CheckTID", CheckTID, []string{"3lmxrbvasth2t", "3LMX"}},
		{"CheckATIdentifier", CheckATIdentifier, []string{"did:plc:abc", "john.test"}},
		{"CheckATURI", CheckATURI, []string{"at://did:plc:abc/app.bsky.feed.post/3lmxrbvasth2t", "at://x"}},
		{"CheckDatetimeSyntax", CheckDatetimeSyntax, []string{"2025-04-16T23:40:33.895Z", "2025"}},
		{"ParseDatetime", func(b []byte) error { _, err := ParseDatetime(b); return err },
			[]string{"2025-04-16T23:40:33.895+01:00", "2025-13-16T23:40:33.895Z"}},
		{"CheckURI", CheckURI, []string{"https://example.com/x", "nope"}},
		{"CheckCIDString", CheckCIDString, []string{"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", "Qmbxxxxxxxx"}},
		{"CheckLanguage", CheckLanguage, []string{"en-u-co-phonebk-t-en-US", "en-a-foo-a-bar"}},
		{"DecodeTID", func(b []byte) error { _, err := DecodeTID(b); return err }, []string{"3lmxrbvasth2t"}},
	}
	for _, c := range cases {
		for _, in := range c.in {
			b := []byte(in)
			if n := testing.AllocsPerRun(100, func() { _ = c.fn(b) }); n != 0 {
				t.Errorf("%s(%q): %v allocs/op, want 0", c.name, in, n)
			}
		}
	}
	buf := make([]byte, 0, 64)
	clock := NewTIDClock(3, nil)
	if n := testing.AllocsPerRun(100, func() { buf = clock.AppendNext(buf[:0]) }); n != 0 {
		t.Errorf("TIDClock.AppendNext: %v allocs/op, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { buf = AppendDatetime(buf[:0], clock.now()) }); n != 0 {
		t.Errorf("AppendDatetime: %v allocs/op, want 0", n)
	}
}
