package atcrypto

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/atrelay/relay/internal/fixtures"
)

// TestLegacyUncompressedKeys parses every #atproto key of
// captures/realpds-2/dids.json (legacy EcdsaSecp256k1VerificationKey2019,
// 65-byte uncompressed points) and checks Multikey/did:key round trips.
func TestLegacyUncompressedKeys(t *testing.T) {
	var docs map[string]struct {
		VerificationMethod []struct {
			ID        string `json:"id"`
			Type      string `json:"type"`
			Multibase string `json:"publicKeyMultibase"`
		} `json:"verificationMethod"`
	}
	if err := json.Unmarshal(fixtures.Read(t, "captures/realpds-2/dids.json"), &docs); err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("no documents")
	}
	for did, doc := range docs {
		if len(doc.VerificationMethod) == 0 {
			t.Fatalf("%s: no verification method", did)
		}
		vm := doc.VerificationMethod[0]
		k, err := ParseMultibase(vm.Type, vm.Multibase)
		if err != nil {
			t.Fatalf("%s: %v", did, err)
		}
		again, err := ParseMultibase(MethodMultikey, k.Multibase())
		if err != nil || again != k {
			t.Fatalf("%s: Multikey round trip = %v, %v", did, again, err)
		}
		if d, err := ParseDIDKey(k.DIDKey()); err != nil || d != k {
			t.Fatalf("%s: did:key round trip = %v, %v", did, d, err)
		}
	}
}

// TestAccountLifecycleCommit verifies the signed commit carried by the #sync
// frame of fixtures/indigo/cmd/relay/testing/testdata/account_lifecycle.json
// against the account's #atproto Multikey. The commit is the CAR's single
// block; its unsigned form is the same canonical map minus the "sig" entry.
func TestAccountLifecycleCommit(t *testing.T) {
	var fx struct {
		Accounts []struct {
			Identity struct {
				Keys map[string]struct {
					Type      string `json:"type"`
					Multibase string `json:"publicKeyMultibase"`
				} `json:"keys"`
			} `json:"identity"`
		} `json:"accounts"`
		Messages []struct {
			Frame struct {
				Header struct {
					T string `json:"t"`
				} `json:"header"`
				Body struct {
					Blocks struct {
						Bytes string `json:"$bytes"`
					} `json:"blocks"`
				} `json:"body"`
			} `json:"frame"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(fixtures.Read(t, "fixtures/indigo/cmd/relay/testing/testdata/account_lifecycle.json"), &fx); err != nil {
		t.Fatal(err)
	}
	kd := fx.Accounts[0].Identity.Keys["atproto"]
	key, err := ParseMultibase(kd.Type, kd.Multibase)
	if err != nil {
		t.Fatal(err)
	}
	var car []byte
	for _, m := range fx.Messages {
		if m.Frame.Header.T == "#sync" {
			car, err = base64.RawStdEncoding.DecodeString(m.Frame.Body.Blocks.Bytes)
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if car == nil {
		t.Fatal("no #sync frame")
	}
	hdrLen, n := binary.Uvarint(car)
	rest := car[n+int(hdrLen):]
	blkLen, n := binary.Uvarint(rest)
	const cidLen = 36
	block := rest[n+cidLen : n+int(blkLen)]
	// Canonical key order puts "sig" third: a6 did… rev… 63 "sig" 58 40 <64>.
	sigKey := []byte{0x63, 's', 'i', 'g', 0x58, 0x40}
	at := bytes.Index(block, sigKey)
	if block[0] != 0xa6 || at < 0 {
		t.Fatalf("unexpected commit shape % x", block[:8])
	}
	sig := block[at+len(sigKey) : at+len(sigKey)+SignatureLen]
	unsigned := append([]byte{0xa5}, block[1:at]...)
	unsigned = append(unsigned, block[at+len(sigKey)+SignatureLen:]...)
	if err := key.Verify(unsigned, sig); err != nil {
		t.Fatalf("commit signature: %v", err)
	}
	unsigned[len(unsigned)-1] ^= 1
	if err := key.Verify(unsigned, sig); err == nil {
		t.Fatal("tampered commit verified")
	}
}
