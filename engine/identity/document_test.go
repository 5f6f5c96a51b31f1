package identity

import (
	"encoding/base32"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/internal/fixtures"
)

// TestParseDocumentFixtures reads the DID documents of
// fixtures/indigo/atproto/identity/testdata and
// fixtures/indigo/testing/testdata/*.didDoc.json.
func TestParseDocumentFixtures(t *testing.T) {
	f := func(rel, did, pds, handle string, curve atcrypto.Curve, want error) {
		t.Helper()
		t.Run(rel, func(t *testing.T) {
			id, err := ParseDocument(did, fixtures.Read(t, rel), true)
			if !errors.Is(err, want) {
				t.Fatalf("err = %v, want %v", err, want)
			}
			if want != nil {
				return
			}
			if id.DID != did || id.PDSHost != pds || id.Handle != handle || id.Key.Curve() != curve {
				t.Fatalf("got %+v (curve %v), want pds %q handle %q curve %v", id, id.Key.Curve(), pds, handle, curve)
			}
		})
	}
	const base = "fixtures/indigo/atproto/identity/testdata/"
	f(base+"did_plc_doc.json", "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "bsky.social", "atproto.com", atcrypto.K256, nil)
	f(base+"did_plc_doc_legacy.json", "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "bsky.social", "atproto.com", atcrypto.K256, nil)
	f(base+"did_web_doc.json", "did:web:discover.bsky.social", "", "", 0, ErrNoKey)
	f(base+"did_plc_doc.json", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "", "", 0, ErrIDMismatch)
	const tb = "fixtures/indigo/testing/testdata/"
	f(tb+"did_plc_z5vnbioquyhivxirw3bbljmu.didDoc.json", "did:plc:z5vnbioquyhivxirw3bbljmu", "localhost:2583", "koch5149-c5.test", atcrypto.K256, nil)
	f(tb+"fakermaker.didDoc.json", "did:plc:dpg45vsnuir2vqqqadsn6afg", "localhost:2583", "ebert9014-89.test", atcrypto.P256, nil)
	f(tb+"greenground.didDoc.json", "did:plc:wqgdnqlv2mwiio6pfchwtrff", "bsky.social", "greenground.bsky.social", atcrypto.K256, nil)
	f(tb+"paul_staging.didDoc.json", "did:plc:cmpvykrzb2l22kj4ojlv3ox4", "pds.staging.bsky.dev", "paul.staging.bsky.dev", atcrypto.K256, nil)

	// The Multikey and legacy documents describe the same account and key.
	a, _ := ParseDocument("did:plc:ewvi7nxzyoun6zhxrhs64oiz", fixtures.Read(t, base+"did_plc_doc.json"), false)
	b, _ := ParseDocument("did:plc:ewvi7nxzyoun6zhxrhs64oiz", fixtures.Read(t, base+"did_plc_doc_legacy.json"), false)
	if a.Key != b.Key {
		t.Fatalf("Multikey %v and legacy %v keys differ", a.Key, b.Key)
	}
}

// TestRealPDSDocuments: every document of captures/realpds-2/dids.json
// yields a key, a PDS endpoint (localhost:5201 or :5202) and a handle.
func TestRealPDSDocuments(t *testing.T) {
	var docs map[string]json.RawMessage
	if err := json.Unmarshal(fixtures.Read(t, "captures/realpds-2/dids.json"), &docs); err != nil {
		t.Fatal(err)
	}
	if len(docs) != 120 {
		t.Fatalf("%d documents, want 120", len(docs))
	}
	for did, doc := range docs {
		id, err := ParseDocument(did, doc, true)
		if err != nil {
			t.Fatalf("%s: %v", did, err)
		}
		if id.Key.IsZero() || (id.PDSHost != "localhost:5201" && id.PDSHost != "localhost:5202") || !strings.HasSuffix(id.Handle, ".test") {
			t.Fatalf("%s: %+v", did, id)
		}
	}
}

// TestParseDocumentErrors gives each document failure its own input.
func TestParseDocumentErrors(t *testing.T) {
	const did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	const key = `{"id":"#atproto","type":"Multikey","controller":"` + did + `","publicKeyMultibase":"zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"}`
	const pds = `{"id":"#atproto_pds","type":"AtprotoPersonalDataServer","serviceEndpoint":"https://pds.example.com"}`
	doc := func(vm, svc, aka string) string {
		return `{"id":"` + did + `","alsoKnownAs":[` + aka + `],"verificationMethod":[` + vm + `],"service":[` + svc + `]}`
	}
	f := func(name, body string, want error) {
		t.Helper()
		if _, err := ParseDocument(did, []byte(body), false); !errors.Is(err, want) {
			t.Errorf("%s: err = %v, want %v", name, err, want)
		}
	}
	f("ok", doc(key, pds, `"at://Alice.Example.com"`), nil)
	f("not json", "{", ErrBadJSON)
	f("array", "[]", ErrBadJSON)
	f("no key", doc("", pds, ""), ErrNoKey)
	f("other controller", doc(strings.Replace(key, `"controller":"`+did, `"controller":"did:plc:x`, 1), pds, ""), ErrNoKey)
	f("bad key", doc(strings.Replace(key, "zQ3sh", "zQ3sH", 1), pds, ""), ErrBadKey)
	f("no pds", doc(key, "", ""), ErrNoPDS)
	f("pds wrong type", doc(key, strings.Replace(pds, "AtprotoPersonalDataServer", "Other", 1), ""), ErrNoPDS)
	f("pds path", doc(key, strings.Replace(pds, "example.com", "example.com/xrpc", 1), ""), ErrBadPDS)
	f("pds object", doc(key, strings.Replace(pds, `"https://pds.example.com"`, `{"uri":"x"}`, 1), ""), ErrBadPDS)
	id, _ := ParseDocument(did, []byte(doc(key, pds, `"https://x","at://bad_handle","at://Alice.Example.com"`)), false)
	if id.Handle != "alice.example.com" {
		t.Errorf("handle = %q", id.Handle)
	}
	id, _ = ParseDocument(did, []byte(doc(strings.Replace(key, `"#atproto"`, `"`+did+`#atproto"`, 1), pds, "")), false)
	if id.Key.IsZero() || id.Handle != "" {
		t.Errorf("absolute #atproto id: %+v", id)
	}
}

// TestNormalizePDSHost covers what the endpoint URL adds to
// syntax.NormalizeHost (whose table holds the host rules): the scheme, the
// default port, and the parts of a URL a PDS endpoint may not have.
func TestNormalizePDSHost(t *testing.T) {
	f := func(in string, dev bool, want string) {
		t.Helper()
		got, ok := NormalizePDSHost(in, dev)
		if want == "" && ok || got != want {
			t.Errorf("NormalizePDSHost(%q, %v) = %q, %v; want %q", in, dev, got, ok, want)
		}
	}
	for _, dev := range []bool{false, true} {
		f("https://pds.example.com", dev, "pds.example.com")
		f("https://PDS.Example.com/", dev, "pds.example.com")
		f("http://pds.example.com", dev, "pds.example.com")
		f("https://pds.example.com:443", dev, "pds.example.com")
		f("http://pds.example.com:80/", dev, "pds.example.com")
		f("https://pds.example.com:8443", dev, "") // not the host the relay dials
		f("http://pds.example.com:443", dev, "")
		f("https://pds.example.com/xrpc", dev, "")
		f("https://user@pds.example.com", dev, "")
		f("https://pds.example.com?x=1", dev, "")
		f("https://pds.example.com#f", dev, "")
		f("ftp://pds.example.com", dev, "")
		f("wss://pds.example.com", dev, "")
		f("pds.example.com", dev, "")
		f("https://", dev, "")
		f("https://bad_host.com", dev, "")
		f("https://10.0.0.1", dev, "")
		f("http://localhost:0", dev, "")
		f("http://localhost:99999", dev, "")
		f("https://"+strings.Repeat("a", 600)+".com", dev, "")
	}
	f("http://localhost:5201", true, "localhost:5201")
	f("https://pds-1.localhost:5201", true, "pds-1.localhost:5201")
	f("http://127.0.0.1:2583", true, "127.0.0.1:2583")
	f("http://[::1]:2583", true, "[::1]:2583")
	f("https://[::1]:443", true, "[::1]")
	f("http://localhost", true, "localhost")
	f("http://localhost:5201", false, "")
	f("https://pds-1.localhost:5201", false, "")
	f("http://127.0.0.1:2583", false, "")
	f("http://localhost", false, "")
}

func TestParseDID(t *testing.T) {
	f := func(in string, want error) {
		t.Helper()
		if _, err := parseDID(in); !errors.Is(err, want) {
			t.Errorf("parseDID(%q) = %v, want %v", in, err, want)
		}
	}
	f("did:plc:ewvi7nxzyoun6zhxrhs64oiz", nil)
	f("did:web:example.com", nil)
	f("did:web:localhost%3A5201", nil)
	f("did:plc:ewvi7nxzyoun6zhxrhs64oi", ErrBadDID)
	f("did:plc:EWVI7NXZYOUN6ZHXRHS64OIZ", ErrBadDID)
	f("did:plc:ewvi7nxzyoun6zhxrhs64oi1", ErrBadDID)
	f("did:web:example.com:path", ErrBadDID)
	f("did:web:example.com/x", ErrBadDID)
	f("did:web:Example.com", ErrBadDID)
	f("did:web:localhost%3A", ErrBadDID)
	f("did:web:localhost%3Ax", ErrBadDID)
	// IP literals in any spelling, and single-label names, never become a
	// request (spec: did:web names a domain).
	f("did:web:127.0.0.1", ErrBadDID)
	f("did:web:127.0.0.1%3A8080", ErrBadDID)
	f("did:web:10.0.0.1", ErrBadDID)
	f("did:web:169.254.169.254", ErrBadDID)
	f("did:web:0x7f.1", ErrBadDID)
	f("did:web:2130706433", ErrBadDID)
	f("did:web:%5B::1%5D", ErrBadDID)
	f("did:web:intranet", ErrBadDID)
	f("did:web:localhost", nil)
	f("did:web:pds.123", ErrBadDID)
	f("did:web:123.example.com", nil)
	f("did:key:zQ3sh", ErrUnsupportedMethod)
	f("plc:abc", ErrBadDID)
	f("", ErrBadDID)
	ref, _ := parseDID("did:web:localhost%3A5201")
	if ref.host != "localhost:5201" || !ref.hasPort {
		t.Errorf("did:web host = %q", ref.host)
	}
	// The binary key is the base32 decoding of the identifier.
	ref, _ = parseDID("did:plc:ewvi7nxzyoun6zhxrhs64oiz")
	want, _ := base32.StdEncoding.DecodeString(strings.ToUpper("ewvi7nxzyoun6zhxrhs64oiz"))
	if string(ref.plc[:]) != string(want) {
		t.Errorf("plc key %x, want %x", ref.plc, want)
	}
}

// FuzzParseDocument: no document panics, and success implies a key and a
// PDS host.
func FuzzParseDocument(f *testing.F) {
	for _, rel := range []string{
		"fixtures/indigo/atproto/identity/testdata/did_plc_doc.json",
		"fixtures/indigo/atproto/identity/testdata/did_plc_doc_legacy.json",
		"fixtures/indigo/atproto/identity/testdata/did_web_doc.json",
		"fixtures/indigo/testing/testdata/fakermaker.didDoc.json",
	} {
		f.Add(fixtures.Read(f, rel))
	}
	f.Add([]byte(`{"id":"did:plc:ewvi7nxzyoun6zhxrhs64oiz","service":[{"id":"#atproto_pds","type":"AtprotoPersonalDataServer","serviceEndpoint":null}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, did := range []string{"did:plc:ewvi7nxzyoun6zhxrhs64oiz", "did:plc:dpg45vsnuir2vqqqadsn6afg"} {
			id, err := ParseDocument(did, body, true)
			if err == nil && (id.Key.IsZero() || id.PDSHost == "") {
				t.Fatalf("success without key or PDS: %+v", id)
			}
		}
	})
}

// FuzzParseDID: no panic; did:plc keys decode from exactly 24 characters.
func FuzzParseDID(f *testing.F) {
	f.Add("did:plc:ewvi7nxzyoun6zhxrhs64oiz")
	f.Add("did:web:localhost%3A5201")
	f.Add("did:web:a.b%3a1")
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := parseDID(s)
		if err == nil && ref.isPLC && len(s) != len(plcPrefix)+plcIDLen {
			t.Fatalf("accepted %q", s)
		}
		_, _ = NormalizePDSHost(s, false)
		_, _ = NormalizePDSHost(s, true)
	})
}
