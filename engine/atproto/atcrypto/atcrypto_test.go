package atcrypto

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"testing"

	"github.com/atrelay/relay/internal/fixtures"
)

// TestSignatureFixtures runs every vector of the interop signature fixtures
// (fixtures/interop/crypto/signature-fixtures.json): valid ones verify,
// high-S and DER ones fail with their own error.
func TestSignatureFixtures(t *testing.T) {
	var vectors []struct {
		Comment            string   `json:"comment"`
		MessageBase64      string   `json:"messageBase64"`
		Algorithm          string   `json:"algorithm"`
		DIDDocSuite        string   `json:"didDocSuite"`
		PublicKeyDID       string   `json:"publicKeyDid"`
		PublicKeyMultibase string   `json:"publicKeyMultibase"`
		SignatureBase64    string   `json:"signatureBase64"`
		ValidSignature     bool     `json:"validSignature"`
		Tags               []string `json:"tags"`
	}
	if err := json.Unmarshal(fixtures.Read(t, "fixtures/interop/crypto/signature-fixtures.json"), &vectors); err != nil {
		t.Fatal(err)
	}
	if len(vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range vectors {
		t.Run(v.Comment, func(t *testing.T) {
			msg, err := base64.RawStdEncoding.DecodeString(v.MessageBase64)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := base64.RawStdEncoding.DecodeString(v.SignatureBase64)
			if err != nil {
				t.Fatal(err)
			}
			key, err := ParseDIDKey(v.PublicKeyDID)
			if err != nil {
				t.Fatalf("ParseDIDKey: %v", err)
			}
			legacy, err := ParseMultibase(v.DIDDocSuite, v.PublicKeyMultibase)
			if err != nil {
				t.Fatalf("ParseMultibase(%s): %v", v.DIDDocSuite, err)
			}
			if key != legacy {
				t.Fatalf("did:key %v and legacy multibase %v differ", key, legacy)
			}
			wantCurve := map[string]Curve{"ES256": P256, "ES256K": K256}[v.Algorithm]
			if key.Curve() != wantCurve {
				t.Fatalf("curve %v, want %v", key.Curve(), wantCurve)
			}
			if got := key.DIDKey(); got != v.PublicKeyDID {
				t.Fatalf("DIDKey() = %s, want %s", got, v.PublicKeyDID)
			}
			err = key.Verify(msg, sig)
			var want error
			switch {
			case v.ValidSignature:
				want = nil
			case has(v.Tags, "high-s"):
				want = ErrSigHighS
			case has(v.Tags, "der-encoded"):
				want = ErrSigDER
			default:
				want = ErrBadSignature
			}
			if !errors.Is(err, want) || (want == nil && err != nil) {
				t.Fatalf("Verify = %v, want %v", err, want)
			}
		})
	}
}

func has(tags []string, tag string) bool {
	for _, x := range tags {
		if x == tag {
			return true
		}
	}
	return false
}

// TestW3CDIDKey derives did:key strings from the private keys of
// fixtures/interop/crypto/w3c_didkey_{K256,P256}.json.
func TestW3CDIDKey(t *testing.T) {
	var k256 []struct {
		Hex    string `json:"privateKeyBytesHex"`
		DIDKey string `json:"publicDidKey"`
	}
	if err := json.Unmarshal(fixtures.Read(t, "fixtures/interop/crypto/w3c_didkey_K256.json"), &k256); err != nil {
		t.Fatal(err)
	}
	var p256 []struct {
		B58    string `json:"privateKeyBytesBase58"`
		DIDKey string `json:"publicDidKey"`
	}
	if err := json.Unmarshal(fixtures.Read(t, "fixtures/interop/crypto/w3c_didkey_P256.json"), &p256); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, c Curve, priv []byte, want string) {
		t.Helper()
		k, err := ParsePrivateKey(c, priv)
		if err != nil {
			t.Fatal(err)
		}
		if got := k.Public().DIDKey(); got != want {
			t.Fatalf("derived %s, want %s", got, want)
		}
		parsed, err := ParseDIDKey(want)
		if err != nil || parsed != k.Public() {
			t.Fatalf("ParseDIDKey(%s) = %v, %v; want %v", want, parsed, err, k.Public())
		}
		if !bytes.Equal(k.Bytes(), priv) {
			t.Fatalf("Bytes() = %x, want %x", k.Bytes(), priv)
		}
	}
	for _, v := range k256 {
		t.Run("K256/"+v.DIDKey, func(t *testing.T) {
			priv, err := hex.DecodeString(v.Hex)
			if err != nil {
				t.Fatal(err)
			}
			check(t, K256, priv, v.DIDKey)
		})
	}
	for _, v := range p256 {
		t.Run("P256/"+v.DIDKey, func(t *testing.T) {
			var buf [maxBase58Bytes]byte
			priv, err := base58Decode(&buf, v.B58)
			if err != nil {
				t.Fatal(err)
			}
			check(t, P256, priv, v.DIDKey)
		})
	}
}

// TestSignRoundTrip signs with both curves and checks every signature is
// 64 bytes, low-S, verifies, and fails on a changed message.
func TestSignRoundTrip(t *testing.T) {
	for _, c := range []Curve{K256, P256} {
		t.Run(c.String(), func(t *testing.T) {
			k, err := GeneratePrivateKey(c)
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParsePrivateKey(c, k.Bytes())
			if err != nil || again.Public() != k.Public() {
				t.Fatalf("ParsePrivateKey(Bytes()) = %v, %v", again, err)
			}
			half := halfOrderK256
			if c == P256 {
				half = halfOrderP256
			}
			for i := range 64 {
				msg := []byte{byte(i), 'm', 's', 'g'}
				sig, err := k.Sign(msg)
				if err != nil {
					t.Fatal(err)
				}
				if len(sig) != SignatureLen {
					t.Fatalf("signature length %d", len(sig))
				}
				if string(sig[32:]) > half {
					t.Fatalf("high-S signature produced: %x", sig)
				}
				if err := k.Public().Verify(msg, sig); err != nil {
					t.Fatalf("Verify: %v", err)
				}
				msg[0] ^= 0xff
				if err := k.Public().Verify(msg, sig); !errors.Is(err, ErrBadSignature) {
					t.Fatalf("Verify(changed message) = %v, want ErrBadSignature", err)
				}
			}
		})
	}
}

// TestHighSRejected turns valid signatures into their high-S twins
// (s' = n - s, which ECDSA also accepts) and expects ErrSigHighS.
func TestHighSRejected(t *testing.T) {
	for _, c := range []Curve{K256, P256} {
		t.Run(c.String(), func(t *testing.T) {
			k, err := GeneratePrivateKey(c)
			if err != nil {
				t.Fatal(err)
			}
			msg := []byte("hello")
			sig, err := k.Sign(msg)
			if err != nil {
				t.Fatal(err)
			}
			order := orderK256
			if c == P256 {
				order = orderP256
			}
			n := new(big.Int).SetBytes([]byte(order))
			s := new(big.Int).SetBytes(sig[32:])
			high := append([]byte(nil), sig...)
			new(big.Int).Sub(n, s).FillBytes(high[32:])
			if err := k.Public().Verify(msg, high); !errors.Is(err, ErrSigHighS) {
				t.Fatalf("Verify(high-S) = %v, want ErrSigHighS", err)
			}
		})
	}
}

// TestSignatureShape covers the checks made before any curve arithmetic.
func TestSignatureShape(t *testing.T) {
	k, err := GeneratePrivateKey(K256)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public()
	good, _ := k.Sign([]byte("x"))
	der := append([]byte{0x30, 0x44, 0x02, 0x20}, good[:32]...)
	der = append(append(der, 0x02, 0x20), good[32:]...)
	zeroR := append(make([]byte, 32), good[32:]...)
	bigR := append([]byte(orderK256), good[32:]...)
	f := func(name string, key PublicKey, sig []byte, want error) {
		t.Helper()
		if err := key.Verify([]byte("x"), sig); !errors.Is(err, want) {
			t.Errorf("%s: Verify = %v, want %v", name, err, want)
		}
	}
	f("good", pub, good, nil)
	f("empty", pub, nil, ErrSigLength)
	f("short", pub, good[:63], ErrSigLength)
	f("long", pub, append(good, 0), ErrSigLength)
	f("der", pub, der, ErrSigDER)
	f("zero r", pub, zeroR, ErrSigRange)
	f("r = n", pub, bigR, ErrSigRange)
	f("zero key", PublicKey{}, good, ErrNoKey)
	if err := pub.VerifyHash(make([]byte, 31), good); !errors.Is(err, ErrHashLength) {
		t.Errorf("VerifyHash(31 bytes) = %v", err)
	}
}

// TestParseErrors gives each key-parsing failure its own input.
func TestParseErrors(t *testing.T) {
	const good = "did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc"
	if _, err := ParseDIDKey(good); err != nil {
		t.Fatal(err)
	}
	f := func(in string, want error) {
		t.Helper()
		if _, err := ParseDIDKey(in); !errors.Is(err, want) {
			t.Errorf("ParseDIDKey(%q) = %v, want %v", in, err, want)
		}
	}
	f("", ErrNotDIDKey)
	f("did:plc:abc", ErrNotDIDKey)
	f("did:key:", ErrMultibase)
	f("did:key:Q3sh", ErrMultibase)
	f("did:key:z", ErrMulticodec)
	f("did:key:z0OIl", ErrBase58)
	f("did:key:z"+string(bytes.Repeat([]byte{'2'}, 200)), ErrKeyTooLong)
	// base58 of e7 01 alone and of an unknown multicodec.
	f("did:key:z"+string(appendBase58(nil, []byte{0xe7, 0x01})), ErrPointLength)
	f("did:key:z"+string(appendBase58(nil, append([]byte{0xed, 0x01}, make([]byte, 32)...))), ErrMulticodec)
	// Compressed prefix with an x that has no point on secp256k1 (x = 5).
	bad := append([]byte{0xe7, 0x01, 0x02}, make([]byte, 32)...)
	bad[len(bad)-1] = 5
	f("did:key:z"+string(appendBase58(nil, bad)), ErrNotOnCurve)
	bad[2] = 0x05
	f("did:key:z"+string(appendBase58(nil, bad)), ErrPointEncoding)
	if _, err := ParseMultibase("JsonWebKey2020", "z1"); !errors.Is(err, ErrMethodType) {
		t.Errorf("unknown method type: %v", err)
	}
	if _, err := ParseMultibase(MethodLegacyP256, "z"+string(appendBase58(nil, make([]byte, 40)))); !errors.Is(err, ErrPointLength) {
		t.Errorf("legacy 40-byte point: %v", err)
	}
}

// TestBase58 checks the codec against known strings and round trips,
// including leading zero bytes.
func TestBase58(t *testing.T) {
	f := func(raw []byte, enc string) {
		t.Helper()
		if got := string(appendBase58(nil, raw)); got != enc {
			t.Errorf("encode %x = %q, want %q", raw, got, enc)
		}
		var buf [maxBase58Bytes]byte
		got, err := base58Decode(&buf, enc)
		if err != nil || !bytes.Equal(got, raw) {
			t.Errorf("decode %q = %x, %v; want %x", enc, got, err, raw)
		}
	}
	f([]byte{}, "")
	f([]byte{0}, "1")
	f([]byte{0, 0, 1}, "112")
	f([]byte("hello world"), "StV1DL6CwTryKyV")
	f([]byte{0xff, 0xff}, "LUv")
}
