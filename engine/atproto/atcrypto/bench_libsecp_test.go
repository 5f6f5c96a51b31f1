//go:build cgo && !purego

package atcrypto

import (
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	ethsecp "github.com/ethereum/go-ethereum/crypto/secp256k1"
)

// BenchmarkVerifyK256Libsecp calls libsecp256k1 directly with the 33-byte
// compressed key (it decompresses inside every call).
func BenchmarkVerifyK256Libsecp(b *testing.B) {
	v := newBenchVector(b, K256)
	comp := v.key.Public().Compressed()
	b.ReportAllocs()
	for b.Loop() {
		if !ethsecp.VerifySignature(comp[:], v.hash[:], v.sig) {
			b.Fatal("libsecp: does not verify")
		}
	}
}

// BenchmarkVerifyK256LibsecpUncompressed hands libsecp256k1 the 65-byte
// point; the difference to BenchmarkVerifyK256Libsecp is the decompression
// (square root) a cache of uncompressed keys would save.
func BenchmarkVerifyK256LibsecpUncompressed(b *testing.B) {
	v := newBenchVector(b, K256)
	comp := v.key.Public().Compressed()
	pk, err := secp256k1.ParsePubKey(comp[:])
	if err != nil {
		b.Fatal(err)
	}
	unc := pk.SerializeUncompressed()
	b.ReportAllocs()
	for b.Loop() {
		if !ethsecp.VerifySignature(unc, v.hash[:], v.sig) {
			b.Fatal("libsecp: does not verify")
		}
	}
}

// TestLibsecpSemantics pins what the cgo backend relies on: it takes 33- and
// 65-byte keys and rejects the high-S twin of a valid signature by itself.
func TestLibsecpSemantics(t *testing.T) {
	v := newBenchVector(t, K256)
	comp := v.key.Public().Compressed()
	pk, err := secp256k1.ParsePubKey(comp[:])
	if err != nil {
		t.Fatal(err)
	}
	if !ethsecp.VerifySignature(comp[:], v.hash[:], v.sig) || !ethsecp.VerifySignature(pk.SerializeUncompressed(), v.hash[:], v.sig) {
		t.Fatal("valid signature rejected")
	}
	var s secp256k1.ModNScalar
	s.SetByteSlice(v.sig[32:])
	s.Negate()
	high := append([]byte(nil), v.sig...)
	s.PutBytesUnchecked(high[32:])
	if ethsecp.VerifySignature(comp[:], v.hash[:], high) {
		t.Fatal("libsecp256k1 accepted a high-S signature")
	}
}

// TestVerifyK256NoAlloc: a reused Verifier verifies secp256k1 signatures
// without allocating (the cgo backend; the pure-Go one allocates inside
// decred and is not asserted).
func TestVerifyK256NoAlloc(t *testing.T) {
	v := newBenchVector(t, K256)
	pub := v.key.Public()
	var ver Verifier
	allocs := testing.AllocsPerRun(50, func() {
		if err := ver.Verify(pub, v.msg, v.sig); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Verifier.Verify allocates %v times per call, want 0", allocs)
	}
}

// TestKeyCacheCollisions: two keys sharing a cache slot evict each other and
// never verify each other's signatures; every answer matches a Verifier with
// an empty cache.
func TestKeyCacheCollisions(t *testing.T) {
	slot := func(k PublicKey) uint32 {
		c := k.Compressed()
		return (uint32(c[1]) | uint32(c[2])<<8 | uint32(c[3])<<16 | uint32(c[4])<<24) % keyCacheSlots
	}
	// Birthday bound: ~160 keys for a shared slot among 16,384.
	seen := map[uint32]benchVector{}
	var a, b benchVector
	for i := 0; ; i++ {
		if i == 5000 {
			t.Fatal("no two keys shared a slot in 5,000")
		}
		v := newBenchVector(t, K256)
		s := slot(v.key.Public())
		if prev, ok := seen[s]; ok {
			a, b = prev, v
			break
		}
		seen[s] = v
	}
	var ver Verifier
	for round := 0; round < 3; round++ {
		for _, c := range []struct {
			key  benchVector
			sig  benchVector
			want bool
		}{{a, a, true}, {b, b, true}, {a, b, false}, {b, a, false}, {a, a, true}} {
			err := ver.Verify(c.key.key.Public(), c.sig.msg, c.sig.sig)
			var fresh Verifier
			errFresh := fresh.Verify(c.key.key.Public(), c.sig.msg, c.sig.sig)
			if (err == nil) != c.want || (err == nil) != (errFresh == nil) {
				t.Fatalf("round %d: err %v, fresh verifier %v, want ok=%t", round, err, errFresh, c.want)
			}
		}
	}
}

// BenchmarkVerifyK256Cached is the production path with the key already in
// the Verifier's cache: the decompression is paid once per key.
func BenchmarkVerifyK256Cached(b *testing.B) {
	v := newBenchVector(b, K256)
	pub := v.key.Public()
	var ver Verifier
	if err := ver.Verify(pub, v.msg, v.sig); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := ver.VerifyHash(pub, v.hash[:], v.sig); err != nil {
			b.Fatal(err)
		}
	}
}
