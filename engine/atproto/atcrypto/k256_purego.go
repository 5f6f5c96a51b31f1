//go:build !cgo || purego

package atcrypto

import "gitlab.com/yawning/secp256k1-voi/secec"

// K256Backend names the secp256k1 verifier compiled into this build.
const K256Backend = "secp256k1-voi (pure Go)"

// verifyK256 parses the key and verifies with secp256k1-voi, the faster of
// the two pure-Go candidates (BenchmarkVerifyK256Voi vs …Decred); the
// scratch is unused because the library allocates its own values.
func verifyK256(_ *Verifier, comp *[CompressedLen]byte, h *[32]byte, sig *[SignatureLen]byte) error {
	pk, err := secec.NewPublicKey(comp[:])
	if err != nil {
		return ErrNotOnCurve
	}
	// Raw r‖s input; RejectMalleable keeps the library strict about low-S
	// on its own too, though checkSignature has already enforced it.
	opts := secec.ECDSAOptions{Encoding: secec.EncodingCompact, RejectMalleable: true}
	if !pk.Verify(h[:], sig[:], &opts) {
		return ErrBadSignature
	}
	return nil
}

// keyCache is empty in the pure-Go build: the library parses keys itself.
type keyCache struct{}
