package atcrypto

import (
	"errors"
	"testing"
)

// FuzzParseDIDKey: no input panics, and every accepted key formats back to
// a did:key that parses to the same key.
func FuzzParseDIDKey(f *testing.F) {
	f.Add("did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc")
	f.Add("did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo")
	f.Add("did:key:z")
	f.Add("did:key:z111111111111111111111111111111111111111111111")
	f.Add("did:key:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseDIDKey(s)
		if err != nil {
			if !k.IsZero() {
				t.Fatal("error with a non-zero key")
			}
			return
		}
		again, err := ParseDIDKey(k.DIDKey())
		if err != nil || again != k {
			t.Fatalf("round trip of %q: %v, %v", s, again, err)
		}
	})
}

// FuzzParseMultibase covers the legacy (bare point) and Multikey forms.
func FuzzParseMultibase(f *testing.F) {
	f.Add(uint8(0), "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF")
	f.Add(uint8(1), "zQYEBzXeuTM9UR3rfvNag6L3RNAs5pQZyYPsomTsgQhsxLdEgCrPTLgFna8yqCnxPpNT7DBk6Ym3dgPKNu86vt9GR")
	f.Add(uint8(2), "zxdM8dSstjrpZaRUwBmDvjGXweKuEMVN95A9oJBFjkWMh")
	f.Add(uint8(2), "zNMqQUvfLpsD4DMAg1TzzB1SnBBe8unWUcy1DJ6qjY8hLgdriSFkfv781S68StfVxPMWoiJeEKfTJc183WsKZithS")
	types := []string{MethodMultikey, MethodLegacyK256, MethodLegacyP256, "other"}
	f.Fuzz(func(t *testing.T, typ uint8, s string) {
		k, err := ParseMultibase(types[int(typ)%len(types)], s)
		if err != nil {
			return
		}
		if again, err := ParseMultibase(MethodMultikey, k.Multibase()); err != nil || again != k {
			t.Fatalf("round trip of %q: %v, %v", s, again, err)
		}
	})
}

// FuzzVerify feeds arbitrary signatures to both curves: no panic, and
// nothing verifies except the genuine signature.
func FuzzVerify(f *testing.F) {
	keys := map[Curve]*PrivateKey{}
	for _, c := range []Curve{K256, P256} {
		k, err := GeneratePrivateKey(c)
		if err != nil {
			f.Fatal(err)
		}
		keys[c] = k
		sig, _ := k.Sign([]byte("seed"))
		f.Add(c == K256, []byte("seed"), sig)
		f.Add(c == K256, []byte("seed"), sig[:63])
		f.Add(c == K256, []byte("x"), append([]byte{0x30, 0x44}, sig...))
	}
	f.Add(true, []byte{}, make([]byte, 64))
	f.Fuzz(func(t *testing.T, k256 bool, msg, sig []byte) {
		c := P256
		if k256 {
			c = K256
		}
		var v Verifier
		err := v.Verify(keys[c].Public(), msg, sig)
		if err == nil {
			if string(msg) != "seed" {
				t.Fatalf("signature over %q verified", msg)
			}
			return
		}
		if !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrSigLength) && !errors.Is(err, ErrSigDER) &&
			!errors.Is(err, ErrSigHighS) && !errors.Is(err, ErrSigRange) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}
