package atcrypto

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"math/big"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
)

// PrivateKeyLen is the length of a serialized private key: the 32-byte
// big-endian scalar.
const PrivateKeyLen = 32

// PrivateKey is a signing key for either curve. It exists for bench tools and
// tests that play the part of a PDS; the relay itself never signs. A
// PrivateKey is immutable after construction and safe for concurrent use.
type PrivateKey struct {
	// Exactly one of k256/p256 is set, matching pub.curve; all static.
	k256 *secp256k1.PrivateKey
	p256 *ecdsa.PrivateKey
	pub  PublicKey
}

// GeneratePrivateKey returns a new random key on curve c.
func GeneratePrivateKey(c Curve) (*PrivateKey, error) {
	switch c {
	case K256:
		k, err := secp256k1.GeneratePrivateKey()
		if err != nil {
			return nil, err
		}
		return newK256(k)
	case P256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		return newP256(k)
	}
	return nil, ErrCurve
}

// ParsePrivateKey builds a key on curve c from its 32-byte big-endian scalar,
// which must lie in [1, n-1].
func ParsePrivateKey(c Curve, b []byte) (*PrivateKey, error) {
	if len(b) != PrivateKeyLen {
		return nil, ErrPrivateKeyLength
	}
	switch c {
	case K256:
		if isZero(b) || string(b) >= orderK256 {
			return nil, ErrPrivateKeyRange
		}
		return newK256(secp256k1.PrivKeyFromBytes(b))
	case P256:
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b)
		if err != nil {
			return nil, ErrPrivateKeyRange
		}
		return newP256(k)
	}
	return nil, ErrCurve
}

func newK256(k *secp256k1.PrivateKey) (*PrivateKey, error) {
	pub, err := fromSEC1(K256, k.PubKey().SerializeCompressed())
	if err != nil {
		return nil, err
	}
	return &PrivateKey{k256: k, pub: pub}, nil
}

func newP256(k *ecdsa.PrivateKey) (*PrivateKey, error) {
	pub, err := fromSEC1(P256, elliptic.MarshalCompressed(elliptic.P256(), k.X, k.Y))
	if err != nil {
		return nil, err
	}
	return &PrivateKey{p256: k, pub: pub}, nil
}

// Curve returns the key's curve.
func (k *PrivateKey) Curve() Curve { return k.pub.curve }

// Public returns the matching public key.
func (k *PrivateKey) Public() PublicKey { return k.pub }

// Bytes returns the 32-byte big-endian scalar (a fresh copy).
func (k *PrivateKey) Bytes() []byte {
	if k.k256 != nil {
		return k.k256.Serialize()
	}
	out := make([]byte, PrivateKeyLen)
	return k.p256.D.FillBytes(out)
}

// Sign returns the 64-byte r‖s signature of SHA-256(msg), always low-S.
func (k *PrivateKey) Sign(msg []byte) ([]byte, error) {
	h := sha256.Sum256(msg)
	return k.SignHash(h[:])
}

// SignHash signs a caller-computed 32-byte SHA-256 digest; the result is a
// 64-byte low-S r‖s signature.
func (k *PrivateKey) SignHash(hash []byte) ([]byte, error) {
	if len(hash) != sha256.Size {
		return nil, ErrHashLength
	}
	if k.k256 != nil {
		// SignCompact yields recovery-byte ‖ r ‖ s with s already
		// normalised to the lower half (RFC 6979 nonce).
		return secpecdsa.SignCompact(k.k256, hash, true)[1:], nil
	}
	r, s, err := ecdsa.Sign(rand.Reader, k.p256, hash)
	if err != nil {
		return nil, err
	}
	n := elliptic.P256().Params().N
	if s.Cmp(new(big.Int).Rsh(n, 1)) > 0 {
		s.Sub(n, s)
	}
	sig := make([]byte, SignatureLen)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig, nil
}
