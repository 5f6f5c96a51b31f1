package syntax

import (
	"regexp"
	"testing"
	"time"
)

// The fuzz targets compare the hand-written validators with the published
// regular expressions (spec §2) plus their length limits, and check that the
// []byte and string faces agree. Seeds cover every reason; the interop
// fixtures add more through the unit tests.

var (
	didRE    = regexp.MustCompile(`^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$`)
	pctRE    = regexp.MustCompile(`%([^0-9A-Fa-f]|.[^0-9A-Fa-f]|.?$)`)
	tidRE    = regexp.MustCompile(`^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$`)
	handleRE = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
	nsidRE   = regexp.MustCompile(`^[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+(\.[a-zA-Z]([a-zA-Z0-9]{0,62})?)$`)
	rkeyRE   = regexp.MustCompile(`^[a-zA-Z0-9_~.:-]{1,512}$`)
)

func FuzzDID(f *testing.F) {
	for _, s := range []string{
		"did:plc:7iza6de2dwap2sbkpav7c6c6", "did:web:example.com", "did:web:localhost%3A1234",
		"did:method:val%", "did:method:-:_:.:%ab", "did:m123:x", "did:plc:", "did:plc:ab%4",
		"DID:plc:x", "did:x:%zz", "did:x:a%4Z", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := CheckDID(b)
		_, serr := ParseDID(string(b))
		if err != serr {
			t.Fatalf("CheckDID=%v ParseDID=%v", err, serr)
		}
		want := len(b) <= MaxDIDLen && didRE.Match(b) && !pctRE.Match(b)
		if (err == nil) != want {
			t.Fatalf("CheckDID(%q) = %v, regex says valid=%v", b, err, want)
		}
		berr := CheckBlessedDID(b)
		if err != nil && berr != err {
			t.Fatalf("CheckBlessedDID(%q) = %v, syntax said %v", b, berr, err)
		}
	})
}

func FuzzTID(f *testing.F) {
	for _, s := range []string{"3lmxrbvasth2t", "2222222222222", "j222222222222", "kjzfcijpj2z2a",
		"3jzfcijpj2z21", "3JZFCIJPJ2Z2A", "222", "zzzzzzzzzzzzz"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeTID(b)
		if (err == nil) != tidRE.Match(b) {
			t.Fatalf("DecodeTID(%q) = %v, regex disagrees", b, err)
		}
		if _, serr := ParseTID(string(b)); serr != err {
			t.Fatalf("ParseTID=%v DecodeTID=%v", serr, err)
		}
		if err != nil {
			return
		}
		if got := string(AppendTID(nil, v)); got != string(b) {
			t.Fatalf("AppendTID(DecodeTID(%q)) = %q", b, got)
		}
		// Bytewise order must equal numeric order against a neighbour.
		if v < 1<<64-1 {
			next := AppendTID(nil, v+1)
			if CompareTID(b, next) != -1 {
				t.Fatalf("CompareTID(%s, %s) != -1", b, next)
			}
		}
		if tm := TID(b).Time(); tm.UnixMicro() != int64(v>>10) {
			t.Fatalf("Time() = %v for %#x", tm, v)
		}
	})
}

func FuzzIdentifiers(f *testing.F) {
	for _, s := range []string{"john.test", "app.bsky.feed.post", "self", "..", "a.b.c/x",
		"at://did:plc:x/a.b.c/k", "x-fr-CH", "en-a-b-A-c", "https://x", "bafybeigdy", "1.2.3.4"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := CheckHandle(b); (err == nil) != (len(b) <= MaxHandleLen && handleRE.Match(b)) {
			t.Fatalf("CheckHandle(%q) = %v, regex disagrees", b, err)
		}
		if err := CheckNSID(b); (err == nil) != (len(b) <= MaxNSIDLen && nsidRE.Match(b)) {
			t.Fatalf("CheckNSID(%q) = %v, regex disagrees", b, err)
		}
		err := CheckRecordKey(b)
		if want := rkeyRE.Match(b) && string(b) != "." && string(b) != ".."; (err == nil) != want {
			t.Fatalf("CheckRecordKey(%q) = %v, want valid=%v", b, err, want)
		}
		// The rest only must not panic and agree across faces.
		_, _, _ = SplitRepoPath(b)
		if _, serr := ParseATURI(string(b)); serr != CheckATURI(b) {
			t.Fatalf("ParseATURI and CheckATURI disagree on %q", b)
		}
		_ = CheckURI(b)
		_ = CheckCIDString(b)
		if CheckLanguage(b) == nil && CheckLanguageSyntax(b) != nil {
			t.Fatalf("CheckLanguage accepted %q that the syntax rejects", b)
		}
	})
}

func FuzzDatetime(f *testing.F) {
	for _, s := range []string{"1985-04-12T23:20:50.123Z", "1985-04-12T23:20:50.123-07:00",
		"0000-01-01T00:00:00+01:00", "1985-13-12T23:20:50.123Z", "1985-04-12T23:20:50.Z",
		"2024-02-29T23:59:59.999999999999+23:59"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseDatetime(b)
		if err == nil && CheckDatetimeSyntax(b) != nil {
			t.Fatalf("ParseDatetime accepted %q that the syntax rejects", b)
		}
		if err != nil {
			return
		}
		// Anything accepted is RFC 3339 and means the same instant to Go.
		ref, perr := time.Parse(time.RFC3339Nano, string(b))
		if perr != nil {
			t.Fatalf("ParseDatetime accepted %q, time.Parse: %v", b, perr)
		}
		if !ref.Equal(got) {
			t.Fatalf("ParseDatetime(%q) = %v, time.Parse = %v", b, got, ref)
		}
	})
}
