// Package atcrypto parses atproto signing public keys and verifies the
// signatures on repository commits (digest §7 and §7.1).
//
// # Curves and rules
//
// Two curves are supported, P-256 (ES256) and secp256k1 (ES256K). A
// signature is ECDSA over SHA-256 of the message, encoded as exactly 64
// bytes r ‖ s (big-endian, 32 bytes each). DER signatures are rejected
// (ErrSigDER), and so are high-S signatures (s > n/2, ErrSigHighS) on both
// curves: the rule is checked here before any library is called, because
// several libraries accept high-S.
//
// # Keys
//
// PublicKey is a 34-byte pointer-free value (curve ‖ compressed point) so the
// identity cache can hold tens of millions of them. Keys arrive as
//
//	did:key:z<base58btc(multicodec ‖ compressed point)>       ParseDIDKey
//	Multikey  publicKeyMultibase, the same without did:key:   ParseMultibase
//	Ecdsa…VerificationKey2019 (legacy): z<base58btc(point)>   ParseMultibase
//
// with multicodec varints 80 24 (P-256) and e7 01 (secp256k1); the legacy
// form carries the bare 33- or 65-byte SEC1 point. Every parser checks that
// the point is on its curve.
//
// # Backends
//
// secp256k1 verification uses libsecp256k1 through cgo (go-ethereum's
// crypto/secp256k1) when cgo is available, and the pure-Go
// gitlab.com/yawning/secp256k1-voi with CGO_ENABLED=0 or
// -tags purego; K256Backend names the one compiled in. P-256 uses the
// standard library. bench_test.go benchmarks every candidate
// (BenchmarkVerifyK256Libsecp, …Voi, …Decred, BenchmarkVerifyP256); on the
// project's 2-vCPU EPYC they measured about 29, 76, 101 and 51 µs.
package atcrypto
