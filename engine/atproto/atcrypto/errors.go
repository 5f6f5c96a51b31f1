package atcrypto

import "errors"

// Key parsing errors. Each failure reason is its own value so callers can
// count them without string matching.
var (
	ErrNotDIDKey     = errors.New("atcrypto: not a did:key")
	ErrMultibase     = errors.New("atcrypto: multibase prefix is not 'z' (base58btc)")
	ErrBase58        = errors.New("atcrypto: invalid base58btc character")
	ErrKeyTooLong    = errors.New("atcrypto: encoded key too long")
	ErrMulticodec    = errors.New("atcrypto: unsupported key multicodec")
	ErrMethodType    = errors.New("atcrypto: unsupported verification method type")
	ErrPointLength   = errors.New("atcrypto: wrong public key point length")
	ErrPointEncoding = errors.New("atcrypto: invalid SEC1 point prefix")
	ErrNotOnCurve    = errors.New("atcrypto: point is not on the curve")
)

// Signature verification errors.
var (
	// ErrNoKey is returned when verifying with the zero PublicKey.
	ErrNoKey = errors.New("atcrypto: no public key")
	// ErrSigDER means the signature looks like ASN.1 DER; atproto requires
	// the 64-byte r‖s form (digest §7).
	ErrSigDER = errors.New("atcrypto: DER-encoded signature (raw 64-byte r||s required)")
	// ErrSigLength means the signature is neither 64 bytes nor DER.
	ErrSigLength = errors.New("atcrypto: signature is not 64 bytes")
	// ErrSigHighS means s > n/2, which atproto forbids on both curves.
	ErrSigHighS = errors.New("atcrypto: high-S signature")
	// ErrSigRange means r or s is zero or not below the group order.
	ErrSigRange = errors.New("atcrypto: signature scalar out of range")
	// ErrHashLength means VerifyHash was given a digest that is not 32 bytes.
	ErrHashLength = errors.New("atcrypto: digest is not 32 bytes")
	// ErrBadSignature means the signature is well formed but does not verify.
	ErrBadSignature = errors.New("atcrypto: signature does not verify")
)

// Private key errors.
var (
	ErrPrivateKeyLength = errors.New("atcrypto: private key is not 32 bytes")
	ErrPrivateKeyRange  = errors.New("atcrypto: private key scalar out of range")
	ErrCurve            = errors.New("atcrypto: unknown curve")
)
