package atcrypto

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
)

// SignatureLen is the only accepted signature length: r ‖ s, 32 bytes each,
// big-endian.
const SignatureLen = 64

// Group orders and their halves as 32-byte big-endian strings (digest §7);
// strings so the tables are constants. A signature is low-S when s <= n/2.
const (
	orderK256     = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xba\xae\xdc\xe6\xaf\x48\xa0\x3b\xbf\xd2\x5e\x8c\xd0\x36\x41\x41"
	halfOrderK256 = "\x7f\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x5d\x57\x6e\x73\x57\xa4\x50\x1d\xdf\xe9\x2f\x46\x68\x1b\x20\xa0"
	orderP256     = "\xff\xff\xff\xff\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xbc\xe6\xfa\xad\xa7\x17\x9e\x84\xf3\xb9\xca\xc2\xfc\x63\x25\x51"
	halfOrderP256 = "\x7f\xff\xff\xff\x80\x00\x00\x00\x7f\xff\xff\xff\xff\xff\xff\xff\xde\x73\x7d\x56\xd3\x8b\xcf\x42\x79\xdc\xe5\x61\x7e\x31\x92\xa8"
)

// Verify checks that sig is a valid low-S ECDSA signature by k over
// SHA-256(msg). It returns nil on success and one of the ErrSig… values,
// ErrNoKey or ErrBadSignature otherwise. It allocates a Verifier per call;
// hot paths keep one Verifier per worker instead.
func (k PublicKey) Verify(msg, sig []byte) error {
	var v Verifier
	return v.Verify(k, msg, sig)
}

// VerifyHash is Verify for a caller-computed SHA-256 digest (32 bytes).
func (k PublicKey) VerifyHash(hash, sig []byte) error {
	var v Verifier
	return v.VerifyHash(k, hash, sig)
}

// Verifier holds the scratch space for verifying without allocation: with
// the cgo backend, secp256k1 verification through a reused Verifier does not
// allocate once the key has been seen. The zero value is ready to use. A
// Verifier is owned by one goroutine at a time (keep one per worker); the
// only state it keeps between calls is a cache of decompressed keys, which
// changes its speed, never its answers.
type Verifier struct {
	// Inputs copied for the C call (see k256_libsecp.go); owned by the
	// goroutine currently calling Verify.
	key  [CompressedLen]byte
	full [uncompressedLen]byte
	hash [32]byte
	sig  [SignatureLen]byte
	// keys caches decompressed secp256k1 keys for the cgo backend,
	// allocated on first use; nil in the pure-Go build.
	keys *keyCache
}

// Verify is PublicKey.Verify using v's scratch space.
func (v *Verifier) Verify(k PublicKey, msg, sig []byte) error {
	h := sha256.Sum256(msg)
	return v.verifyHash(k, &h, sig)
}

// VerifyHash is PublicKey.VerifyHash using v's scratch space.
func (v *Verifier) VerifyHash(k PublicKey, hash, sig []byte) error {
	if len(hash) != sha256.Size {
		return ErrHashLength
	}
	return v.verifyHash(k, (*[32]byte)(hash), sig)
}

func (v *Verifier) verifyHash(k PublicKey, h *[32]byte, sig []byte) error {
	if err := checkSignature(k.curve, sig); err != nil {
		return err
	}
	switch k.curve {
	case K256:
		return verifyK256(v, &k.comp, h, (*[SignatureLen]byte)(sig))
	case P256:
		return verifyP256(k.comp, h, (*[SignatureLen]byte)(sig))
	}
	return ErrNoKey
}

// checkSignature applies the atproto rules that need no curve arithmetic:
// exact length, r and s in [1, n-1], and s <= n/2. The library verifiers are
// not trusted to enforce low-S (stdlib and decred accept high-S), so it is
// checked here for every backend.
func checkSignature(c Curve, sig []byte) error {
	var order, half string
	switch c {
	case K256:
		order, half = orderK256, halfOrderK256
	case P256:
		order, half = orderP256, halfOrderP256
	default:
		return ErrNoKey
	}
	if len(sig) != SignatureLen {
		// DER is SEQUENCE(0x30) ‖ length ‖ two INTEGERs: 8 to 72 bytes.
		if len(sig) >= 8 && len(sig) <= 72 && sig[0] == 0x30 && int(sig[1]) == len(sig)-2 {
			return ErrSigDER
		}
		return ErrSigLength
	}
	r, s := sig[:32], sig[32:]
	if isZero(r) || isZero(s) || string(r) >= order || string(s) >= order {
		return ErrSigRange
	}
	if string(s) > half {
		return ErrSigHighS
	}
	return nil
}

// isZero reports whether every byte of b is zero. Signatures are public, so
// nothing here needs constant time.
func isZero(b []byte) bool {
	var acc byte
	for _, x := range b {
		acc |= x
	}
	return acc == 0
}

// verifyP256 uses the standard library. crypto/ecdsa only takes DER and an
// affine big.Int key, so this path decompresses the point and re-encodes the
// signature on every call (it allocates; P-256 keys are a small minority of
// accounts). The DER is built in a stack buffer. comp is taken by value so
// that only this path, not every Verify, pays for it escaping.
func verifyP256(comp [CompressedLen]byte, h *[32]byte, sig *[SignatureLen]byte) error {
	x, y := elliptic.UnmarshalCompressed(elliptic.P256(), comp[:])
	if x == nil {
		return ErrNotOnCurve
	}
	pub := ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}
	var der [72]byte
	if !ecdsa.VerifyASN1(&pub, h[:], appendDERSignature(der[:0], sig)) {
		return ErrBadSignature
	}
	return nil
}

// appendDERSignature appends SEQUENCE { INTEGER r, INTEGER s } for a raw
// signature whose scalars are already known to be non-zero.
func appendDERSignature(dst []byte, sig *[SignatureLen]byte) []byte {
	r, s := trimInt(sig[:32]), trimInt(sig[32:])
	rl, sl := len(r), len(s)
	if r[0]&0x80 != 0 {
		rl++
	}
	if s[0]&0x80 != 0 {
		sl++
	}
	dst = append(dst, 0x30, byte(4+rl+sl))
	dst = appendDERInt(dst, r, rl)
	return appendDERInt(dst, s, sl)
}

func appendDERInt(dst, v []byte, l int) []byte {
	dst = append(dst, 0x02, byte(l))
	if l > len(v) {
		dst = append(dst, 0)
	}
	return append(dst, v...)
}

func trimInt(b []byte) []byte {
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	return b
}
