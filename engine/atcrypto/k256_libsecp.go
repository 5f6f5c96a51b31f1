//go:build cgo && !purego

package atcrypto

import "github.com/ethereum/go-ethereum/crypto/secp256k1"

// K256Backend names the secp256k1 verifier compiled into this build.
const K256Backend = "libsecp256k1 (cgo)"

// verifyK256 uses libsecp256k1 as packaged by go-ethereum. Its
// secp256k1_ecdsa_verify accepts only lower-S signatures and its key parser
// takes 33- or 65-byte SEC1 points (TestLibsecpSemantics pins both);
// checkSignature has already enforced length, range and low-S so the error
// mapping stays exact. The compressed key is decompressed inside every call
// (about 6 µs of the 29 µs, see BenchmarkVerifyK256LibsecpUncompressed).
//
// Arguments of a cgo call escape to the heap, so the inputs are copied into
// the Verifier's scratch, which already lives there: no allocation per call.
func verifyK256(sc *Verifier, comp *[CompressedLen]byte, h *[32]byte, sig *[SignatureLen]byte) error {
	sc.key, sc.hash, sc.sig = *comp, *h, *sig
	if !secp256k1.VerifySignature(sc.key[:], sc.hash[:], sc.sig[:]) {
		return ErrBadSignature
	}
	return nil
}
