package atcrypto

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	decredecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
	"gitlab.com/yawning/secp256k1-voi/secec"
)

// benchVector is one signed 300-byte message (about an unsigned commit).
type benchVector struct {
	key  *PrivateKey
	msg  []byte
	hash [32]byte
	sig  []byte
}

func newBenchVector(tb testing.TB, c Curve) benchVector {
	tb.Helper()
	k, err := GeneratePrivateKey(c)
	if err != nil {
		tb.Fatal(err)
	}
	msg := make([]byte, 300)
	for i := range msg {
		msg[i] = byte(i)
	}
	sig, err := k.Sign(msg)
	if err != nil {
		tb.Fatal(err)
	}
	return benchVector{key: k, msg: msg, hash: sha256.Sum256(msg), sig: sig}
}

// BenchmarkVerifyK256 is the production path for secp256k1 (whichever
// backend this build compiled in, see K256Backend) through a reused
// Verifier, SHA-256 of a 300-byte message included.
func BenchmarkVerifyK256(b *testing.B) { benchVerify(b, K256) }

// BenchmarkVerifyP256 is the production (standard library) P-256 path,
// named as the brief asks; it includes decompressing the stored key.
func BenchmarkVerifyP256(b *testing.B) { benchVerify(b, P256) }

// benchVerify measures Verifier.Verify of a 300-byte message signed on
// curve c.
func benchVerify(b *testing.B, c Curve) {
	v := newBenchVector(b, c)
	pub := v.key.Public()
	var ver Verifier
	b.ReportAllocs()
	for b.Loop() {
		if err := ver.Verify(pub, v.msg, v.sig); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyK256Decred measures decred's verifier on a digest,
// including parsing the compressed key as the production pure-Go path does.
func BenchmarkVerifyK256Decred(b *testing.B) {
	v := newBenchVector(b, K256)
	comp := v.key.Public().Compressed()
	b.ReportAllocs()
	for b.Loop() {
		pk, err := secp256k1.ParsePubKey(comp[:])
		if err != nil {
			b.Fatal(err)
		}
		var r, s secp256k1.ModNScalar
		r.SetByteSlice(v.sig[:32])
		s.SetByteSlice(v.sig[32:])
		if !decredecdsa.NewSignature(&r, &s).Verify(v.hash[:], pk) {
			b.Fatal("decred: does not verify")
		}
	}
}

// BenchmarkVerifyK256Voi measures gitlab.com/yawning/secp256k1-voi on a
// digest, including parsing the compressed key.
func BenchmarkVerifyK256Voi(b *testing.B) {
	v := newBenchVector(b, K256)
	comp := v.key.Public().Compressed()
	opts := &secec.ECDSAOptions{Encoding: secec.EncodingCompact, RejectMalleable: true}
	b.ReportAllocs()
	for b.Loop() {
		pk, err := secec.NewPublicKey(comp[:])
		if err != nil {
			b.Fatal(err)
		}
		if !pk.Verify(v.hash[:], v.sig, opts) {
			b.Fatal("voi: does not verify")
		}
	}
}

// BenchmarkParseK256Decred is the cost of decompressing a stored key for the
// pure-Go backend (what a parsed-key cache would save per verify).
func BenchmarkParseK256Decred(b *testing.B) {
	v := newBenchVector(b, K256)
	comp := v.key.Public().Compressed()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := secp256k1.ParsePubKey(comp[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseP256 is the cost of decompressing a stored P-256 key.
func BenchmarkParseP256(b *testing.B) {
	v := newBenchVector(b, P256)
	comp := v.key.Public().Compressed()
	b.ReportAllocs()
	for b.Loop() {
		if x, _ := elliptic.UnmarshalCompressed(elliptic.P256(), comp[:]); x == nil {
			b.Fatal("bad point")
		}
	}
}

// BenchmarkVerifyP256Preparsed is stdlib P-256 verify with the key already
// decompressed, to separate decompression from verification.
func BenchmarkVerifyP256Preparsed(b *testing.B) {
	v := newBenchVector(b, P256)
	comp := v.key.Public().Compressed()
	x, y := elliptic.UnmarshalCompressed(elliptic.P256(), comp[:])
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}
	var der [72]byte
	sig := appendDERSignature(der[:0], (*[SignatureLen]byte)(v.sig))
	b.ReportAllocs()
	for b.Loop() {
		if !ecdsa.VerifyASN1(pub, v.hash[:], sig) {
			b.Fatal("does not verify")
		}
	}
}

// BenchmarkParseDIDKey is the cost of parsing a did:key (base58 + point
// validation), paid once per DID-document fetch.
func BenchmarkParseDIDKey(b *testing.B) {
	v := newBenchVector(b, K256)
	s := v.key.Public().DIDKey()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDIDKey(s); err != nil {
			b.Fatal(err)
		}
	}
}
