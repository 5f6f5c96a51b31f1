//go:build cgo && !purego

package atcrypto

import (
	"encoding/binary"

	dsecp "github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/ethereum/go-ethereum/crypto/secp256k1"
)

// K256Backend names the secp256k1 verifier compiled into this build.
const K256Backend = "libsecp256k1 (cgo)"

// keyCacheSlots is the size of each Verifier's table of decompressed keys:
// 16,384 slots of 98 bytes, 1.5 MiB per Verifier (one per worker). An
// account's commits all go to the same worker, so the accounts active in
// the last minutes of even a busy relay mostly fit.
const keyCacheSlots = 1 << 14

// keyCacheEntry maps a compressed key to its uncompressed form. The zero
// entry never matches: comp[0] of a real key is 0x02 or 0x03.
type keyCacheEntry struct {
	comp [CompressedLen]byte
	full [uncompressedLen]byte
}

// keyCache is a direct-mapped table indexed by bits of the key's X
// coordinate, which are uniformly distributed; a collision just evicts.
type keyCache [keyCacheSlots]keyCacheEntry

// verifyK256 uses libsecp256k1 as packaged by go-ethereum. Its
// secp256k1_ecdsa_verify accepts only lower-S signatures and its key parser
// takes 33- or 65-byte SEC1 points (TestLibsecpSemantics pins both);
// checkSignature has already enforced length, range and low-S so the error
// mapping stays exact.
//
// Given a compressed key, libsecp256k1 decompresses it inside every call, a
// square root costing about 6 of its 29 µs
// (BenchmarkVerifyK256LibsecpUncompressed); the same accounts sign commit
// after commit, so the Verifier keeps the uncompressed points it has seen.
//
// Arguments of a cgo call escape to the heap, so the inputs are copied into
// the Verifier's scratch, which already lives there: no allocation per call
// once the key is cached.
func verifyK256(sc *Verifier, comp *[CompressedLen]byte, h *[32]byte, sig *[SignatureLen]byte) error {
	sc.hash, sc.sig = *h, *sig
	key := sc.key[:]
	if e := sc.uncompressed(comp); e != nil {
		sc.full = e.full
		key = sc.full[:]
	} else {
		sc.key = *comp
	}
	if !secp256k1.VerifySignature(key, sc.hash[:], sc.sig[:]) {
		return ErrBadSignature
	}
	return nil
}

// uncompressed returns the cache entry holding comp's uncompressed point,
// decompressing it on a miss, or nil if decompression fails (never for a
// PublicKey from this package's parsers; the caller then verifies with the
// compressed key and lets libsecp256k1 reject it).
func (sc *Verifier) uncompressed(comp *[CompressedLen]byte) *keyCacheEntry {
	if sc.keys == nil {
		sc.keys = new(keyCache)
	}
	e := &sc.keys[binary.LittleEndian.Uint32(comp[1:5])%keyCacheSlots]
	if e.comp == *comp {
		return e
	}
	pk, err := dsecp.ParsePubKey(comp[:])
	if err != nil {
		return nil
	}
	e.comp = *comp
	copy(e.full[:], pk.SerializeUncompressed())
	return e
}
