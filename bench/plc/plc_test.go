package plc

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atrelay/relay/internal/fixtures"
	"github.com/atrelay/relay/internal/testutil"
)

const (
	did1 = "did:plc:2byqcfdosfn3d62gus5ctvts"
	key1 = "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"
	key2 = "zQ3shpKnbdPx3g3CmPf5cRVTPe1HtSwVn5ish3wSnDPQCbLJK"
)

func start(t *testing.T) *Server {
	t.Helper()
	s := New()
	if err := s.Start(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// get fetches path (with an optional Host header) and returns status, content type and body.
func get(t *testing.T, s *Server, path, host string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, body := testutil.Do(t, req)
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

func getDoc(t *testing.T, s *Server, did string) document {
	t.Helper()
	code, ct, body := get(t, s, "/"+did, "")
	if code != 200 || ct != ContentType {
		t.Fatalf("GET %s: %d %q %s", did, code, ct, body)
	}
	var d document
	if err := strictDecode(body, &d); err != nil {
		t.Fatalf("GET %s: %v in %s", did, err, body)
	}
	return d
}

func TestDocumentShape(t *testing.T) {
	s := start(t)
	cases := []struct {
		name    string
		keyType string
		wantCtx string
	}{
		{"multikey", "", "https://w3id.org/security/multikey/v1"},
		{"legacy secp256k1", KeyTypeLegacySecp256k1, "https://w3id.org/security/suites/secp256k1-2019/v1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Put(did1, Doc{Handle: "alice.test", PDS: "http://localhost:5201", Key: key1, KeyType: tc.keyType}); err != nil {
				t.Fatal(err)
			}
			d := getDoc(t, s, did1)
			wantType := tc.keyType
			if wantType == "" {
				wantType = KeyTypeMultikey
			}
			want := document{
				Context:            []string{"https://www.w3.org/ns/did/v1", tc.wantCtx},
				ID:                 did1,
				AlsoKnownAs:        []string{"at://alice.test"},
				VerificationMethod: []verificationMethod{{"#atproto", wantType, did1, key1}},
				Service:            []service{{"#atproto_pds", "AtprotoPersonalDataServer", "http://localhost:5201"}},
			}
			if !reflect.DeepEqual(d, want) {
				t.Fatalf("got %+v\nwant %+v", d, want)
			}
			// Marshal renders offline exactly the body the server serves.
			_, _, body := get(t, s, "/"+did1, "")
			m, err := Marshal(did1, Doc{Handle: "alice.test", PDS: "http://localhost:5201", Key: key1, KeyType: tc.keyType})
			if err != nil || string(m) != string(body) {
				t.Fatalf("Marshal = %s, %v; served %s", m, err, body)
			}
		})
	}
}

func TestRawAndDidWeb(t *testing.T) {
	s := start(t)
	raw := `{"id":"did:web:example.com","custom":true}`
	s.Put("did:web:example.com", Doc{Raw: json.RawMessage(raw)})
	code, _, body := get(t, s, "/.well-known/did.json", "example.com")
	if code != 200 || string(body) != raw {
		t.Fatalf("did:web: %d %s", code, body)
	}
	s.Put("did:web:localhost%3A8080", Doc{Handle: "web.test", PDS: "http://localhost:8080", Key: key1})
	if code, _, body := get(t, s, "/.well-known/did.json", "localhost:8080"); code != 200 || !strings.Contains(string(body), `"id":"did:web:localhost%3A8080"`) {
		t.Fatalf("did:web with port: %d %s", code, body)
	}
	if code, _, _ := get(t, s, "/.well-known/did.json", "other.example"); code != 404 {
		t.Fatalf("unknown did:web: %d", code)
	}
	if err := s.RotateKey("did:web:example.com", key2); !errors.Is(err, ErrRawDocument) {
		t.Fatalf("rotating a non-standard raw doc: %v", err)
	}
}

func TestRotateMigrateTombstone(t *testing.T) {
	s := start(t)
	s.Put(did1, Doc{Handle: "alice.test", PDS: "http://localhost:5201", Key: key1})

	if err := s.RotateKey(did1, key2); err != nil {
		t.Fatal(err)
	}
	if d := getDoc(t, s, did1); d.VerificationMethod[0].PublicKeyMultibase != key2 || d.VerificationMethod[0].Type != KeyTypeMultikey {
		t.Fatalf("after rotation: %+v", d.VerificationMethod)
	}
	if err := s.Migrate(did1, "http://localhost:6000"); err != nil {
		t.Fatal(err)
	}
	if d := getDoc(t, s, did1); d.Service[0].ServiceEndpoint != "http://localhost:6000" || d.VerificationMethod[0].PublicKeyMultibase != key2 {
		t.Fatalf("after migration: %+v", d)
	}
	if err := s.Tombstone(did1); err != nil {
		t.Fatal(err)
	}
	if code, _, body := get(t, s, "/"+did1, ""); code != 404 || !strings.Contains(string(body), "DID not available") {
		t.Fatalf("tombstoned: %d %s", code, body)
	}
	if code, _, body := get(t, s, "/did:plc:unknownunknownunknownunkn", ""); code != 404 || !strings.Contains(string(body), "DID not registered") {
		t.Fatalf("unknown: %d %s", code, body)
	}
	for name, err := range map[string]error{
		"rotate":    s.RotateKey("did:plc:nobody", key1),
		"migrate":   s.Migrate("did:plc:nobody", "x"),
		"tombstone": s.Tombstone("did:plc:nobody"),
	} {
		if !errors.Is(err, ErrUnknownDID) {
			t.Errorf("%s unknown DID: %v", name, err)
		}
	}
	s.Put(did1, Doc{Handle: "alice2.test", PDS: "http://localhost:5201", Key: key1})
	if d := getDoc(t, s, did1); d.AlsoKnownAs[0] != "at://alice2.test" {
		t.Fatalf("after re-Put: %+v", d)
	}
	c := s.Counters()
	if c.Requests != 5 || c.Served != 3 || c.NotFound != 2 || c.Failures != 0 {
		t.Fatalf("counters: %+v", c)
	}
}

func TestFailureInjection(t *testing.T) {
	s := start(t)
	s.Put(did1, Doc{Handle: "a.test", PDS: "http://localhost:1", Key: key1})
	s.FailNext(2)
	for i, want := range []int{500, 500, 200} {
		if code, _, _ := get(t, s, "/"+did1, ""); code != want {
			t.Fatalf("request %d: %d, want %d", i, code, want)
		}
	}
	s.SetFailureRate(1)
	if code, _, _ := get(t, s, "/"+did1, ""); code != 500 {
		t.Fatalf("rate 1: %d", code)
	}
	s.SetFailureRate(0)
	s.SetLatency(time.Millisecond)
	if code, _, _ := get(t, s, "/"+did1, ""); code != 200 {
		t.Fatalf("rate 0 with latency: %d", code)
	}
	if c := s.Counters(); c.Failures != 3 || c.Served != 2 || c.Requests != 5 {
		t.Fatalf("counters: %+v", c)
	}
	resp, err := http.Post(s.URL()+"/"+did1, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || s.Counters().BadMethod != 1 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
}

// TestLoadSharedSnapshot loads shared/captures/realpds-2/dids.json (legacy
// keys, relative ids) with endpoints rewritten, and checks each served
// document equals the original except for that endpoint.
func TestLoadSharedSnapshot(t *testing.T) {
	var snap map[string]json.RawMessage
	if err := json.Unmarshal(fixtures.Read(t, "captures/realpds-2/dids.json"), &snap); err != nil {
		t.Fatal(err)
	}
	s := start(t)
	err := s.LoadSnapshot(snap, func(ep string) string {
		return strings.Replace(ep, "localhost:520", "localhost:999", 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	for did, raw := range snap {
		var want, got map[string]any
		json.Unmarshal(raw, &want)
		_, _, body := get(t, s, "/"+did, "")
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		svc := want["service"].([]any)[0].(map[string]any)
		ep := svc["serviceEndpoint"].(string)
		svc["serviceEndpoint"] = strings.Replace(ep, "localhost:520", "localhost:999", 1)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\n got %v\nwant %v", did, got, want)
		}
	}
	bad := map[string]json.RawMessage{"did:plc:x": json.RawMessage(`{"id":"did:plc:y","verificationMethod":[{}],"service":[{}]}`)}
	if err := s.LoadSnapshot(bad, nil); !errors.Is(err, ErrBadDocument) {
		t.Fatalf("mismatched id: %v", err)
	}
}

func TestConcurrent(t *testing.T) {
	s := start(t)
	s.Put(did1, Doc{Handle: "a.test", PDS: "http://localhost:1", Key: key1})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 25 {
				if i == 0 {
					s.RotateKey(did1, []string{key1, key2}[j%2])
					s.SetFailureRate(0)
				}
				if code, _, _ := get(t, s, "/"+did1, ""); code != 200 {
					t.Errorf("concurrent GET: %d", code)
				}
			}
		}()
	}
	wg.Wait()
	if c := s.Counters(); c.Served != 100 {
		t.Fatalf("counters: %+v", c)
	}
}
