package atcrypto

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"strings"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
)

// Curve names one of the two curves atproto signing keys use. The zero value
// is CurveNone, which no valid key carries.
type Curve uint8

// The curves. The numeric values are not part of any wire format.
const (
	CurveNone Curve = iota
	// P256 is NIST P-256 (secp256r1, JWT alg ES256).
	P256
	// K256 is secp256k1 (JWT alg ES256K).
	K256
)

// String returns the atproto short name of the curve ("p256", "k256").
func (c Curve) String() string {
	switch c {
	case P256:
		return "p256"
	case K256:
		return "k256"
	}
	return "none"
}

// CompressedLen is the length of a SEC1 compressed point: a 0x02/0x03 parity
// byte and the 32-byte big-endian x coordinate.
const CompressedLen = 33

// uncompressedLen is a SEC1 uncompressed point: 0x04 ‖ x ‖ y.
const uncompressedLen = 65

// Multicodec varint prefixes of the public-key codecs (digest §7.1).
const (
	prefixP256 = "\x80\x24" // p256-pub, 0x1200
	prefixK256 = "\xe7\x01" // secp256k1-pub, 0xe7
)

// Verification-method types accepted by ParseMultibase.
const (
	MethodMultikey    = "Multikey"
	MethodLegacyK256  = "EcdsaSecp256k1VerificationKey2019"
	MethodLegacyP256  = "EcdsaSecp256r1VerificationKey2019"
	didKeyPrefix      = "did:key:"
	multibaseBase58   = 'z'
	maxDIDKeyInputLen = len(didKeyPrefix) + 1 + maxBase58Len
)

// PublicKey is a validated signing public key as a plain value: the curve and
// the compressed point, 34 bytes with no pointers, so caches can hold tens of
// millions of them without giving the garbage collector anything to scan.
//
// The zero value is not a key; Verify on it fails with ErrNoKey. Every
// PublicKey obtained from a Parse function holds a point that is on its curve
// and not the identity. PublicKey values are immutable and safe to share.
type PublicKey struct {
	curve Curve
	comp  [CompressedLen]byte
}

// Curve returns the key's curve (CurveNone for the zero value).
func (k PublicKey) Curve() Curve { return k.curve }

// IsZero reports whether k is the zero value (no key).
func (k PublicKey) IsZero() bool { return k.curve == CurveNone }

// Compressed returns the 33-byte SEC1 compressed point.
func (k PublicKey) Compressed() [CompressedLen]byte { return k.comp }

// Equal reports whether two keys are the same curve and point.
func (k PublicKey) Equal(o PublicKey) bool { return k == o }

// PublicKeyFromCompressed validates a 33-byte compressed point on curve c and
// returns it as a PublicKey.
func PublicKeyFromCompressed(c Curve, point []byte) (PublicKey, error) {
	if len(point) != CompressedLen {
		return PublicKey{}, ErrPointLength
	}
	return fromSEC1(c, point)
}

// ParseDIDKey parses "did:key:z…" (multicodec ‖ compressed point, digest
// §7.1) into a PublicKey, checking the point is on the curve.
func ParseDIDKey(s string) (PublicKey, error) {
	if len(s) > maxDIDKeyInputLen {
		return PublicKey{}, ErrKeyTooLong
	}
	rest, ok := strings.CutPrefix(s, didKeyPrefix)
	if !ok {
		return PublicKey{}, ErrNotDIDKey
	}
	return parseMultikey(rest)
}

// ParseMultibase parses the publicKeyMultibase of a DID-document verification
// method of the given type: MethodMultikey (z + base58btc(multicodec ‖
// compressed point)), or one of the legacy types MethodLegacyK256 and
// MethodLegacyP256 (z + base58btc of the bare point, compressed or
// uncompressed). The point is validated and stored compressed.
func ParseMultibase(methodType, multibase string) (PublicKey, error) {
	switch methodType {
	case MethodMultikey:
		return parseMultikey(multibase)
	case MethodLegacyK256:
		return parseLegacy(K256, multibase)
	case MethodLegacyP256:
		return parseLegacy(P256, multibase)
	}
	return PublicKey{}, ErrMethodType
}

func parseMultikey(mb string) (PublicKey, error) {
	var buf [maxBase58Bytes]byte
	raw, err := decodeMultibase(&buf, mb)
	if err != nil {
		return PublicKey{}, err
	}
	if len(raw) < 2 {
		return PublicKey{}, ErrMulticodec
	}
	var c Curve
	switch string(raw[:2]) {
	case prefixP256:
		c = P256
	case prefixK256:
		c = K256
	default:
		return PublicKey{}, ErrMulticodec
	}
	// did:key and Multikey carry the compressed form only (digest §7.1).
	if len(raw) != 2+CompressedLen {
		return PublicKey{}, ErrPointLength
	}
	return fromSEC1(c, raw[2:])
}

func parseLegacy(c Curve, mb string) (PublicKey, error) {
	var buf [maxBase58Bytes]byte
	raw, err := decodeMultibase(&buf, mb)
	if err != nil {
		return PublicKey{}, err
	}
	if len(raw) != CompressedLen && len(raw) != uncompressedLen {
		return PublicKey{}, ErrPointLength
	}
	return fromSEC1(c, raw)
}

func decodeMultibase(buf *[maxBase58Bytes]byte, mb string) ([]byte, error) {
	if len(mb) == 0 || mb[0] != multibaseBase58 {
		return nil, ErrMultibase
	}
	return base58Decode(buf, mb[1:])
}

// fromSEC1 validates a compressed or uncompressed SEC1 point on curve c.
// Parsing is not on the hot path (once per DID-document fetch), so the
// allocating library parsers are fine here.
func fromSEC1(c Curve, point []byte) (PublicKey, error) {
	k := PublicKey{curve: c}
	switch c {
	case K256:
		if point[0] != 0x02 && point[0] != 0x03 && point[0] != 0x04 {
			return PublicKey{}, ErrPointEncoding
		}
		pk, err := secp256k1.ParsePubKey(point)
		if err != nil {
			return PublicKey{}, ErrNotOnCurve
		}
		copy(k.comp[:], pk.SerializeCompressed())
	case P256:
		switch {
		case len(point) == CompressedLen && (point[0] == 0x02 || point[0] == 0x03):
			x, _ := elliptic.UnmarshalCompressed(elliptic.P256(), point)
			if x == nil {
				return PublicKey{}, ErrNotOnCurve
			}
			copy(k.comp[:], point)
		case len(point) == uncompressedLen && point[0] == 0x04:
			pk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
			if err != nil {
				return PublicKey{}, ErrNotOnCurve
			}
			copy(k.comp[:], elliptic.MarshalCompressed(elliptic.P256(), pk.X, pk.Y))
		default:
			return PublicKey{}, ErrPointEncoding
		}
	default:
		return PublicKey{}, ErrNoKey
	}
	return k, nil
}

// AppendMultibase appends the Multikey publicKeyMultibase form
// ("z" + base58btc(multicodec ‖ compressed point)) to dst.
func (k PublicKey) AppendMultibase(dst []byte) []byte {
	var raw [2 + CompressedLen]byte
	switch k.curve {
	case P256:
		copy(raw[:2], prefixP256)
	case K256:
		copy(raw[:2], prefixK256)
	default:
		return dst
	}
	copy(raw[2:], k.comp[:])
	dst = append(dst, multibaseBase58)
	return appendBase58(dst, raw[:])
}

// Multibase returns the Multikey publicKeyMultibase form of k, or "" for the
// zero key.
func (k PublicKey) Multibase() string {
	if k.IsZero() {
		return ""
	}
	var buf [64]byte
	return string(k.AppendMultibase(buf[:0]))
}

// DIDKey returns "did:key:" + Multibase(), or "" for the zero key.
func (k PublicKey) DIDKey() string {
	if k.IsZero() {
		return ""
	}
	var buf [72]byte
	return string(k.AppendMultibase(append(buf[:0], didKeyPrefix...)))
}

// String returns DIDKey(), so keys print readably in logs and test failures.
func (k PublicKey) String() string {
	if k.IsZero() {
		return "atcrypto.PublicKey(none)"
	}
	return k.DIDKey()
}
