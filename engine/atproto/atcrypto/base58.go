package atcrypto

// base58btc (the Bitcoin alphabet) is the only multibase encoding atproto
// keys use. The codec below is the textbook quadratic one: inputs are bounded
// by maxBase58Len, so the quadratic cost is a few thousand byte operations and
// it needs no big integers and no allocation.

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// maxBase58Len bounds an encoded key (the longest legitimate one, a legacy
// uncompressed point, is 89 characters); longer input is rejected before any
// arithmetic so hostile documents cannot buy quadratic work.
const maxBase58Len = 128

// maxBase58Bytes is the decode buffer size: 128 base58 digits carry at most
// 128*log(58)/log(256) < 94 bytes.
const maxBase58Bytes = 96

// base58Digit returns the value of an alphabet character, or 0xff when c is
// not in the alphabet (0, O, I and l are excluded by design of base58btc).
func base58Digit(c byte) uint32 {
	switch {
	case c >= '1' && c <= '9':
		return uint32(c - '1')
	case c >= 'A' && c <= 'H':
		return uint32(c-'A') + 9
	case c >= 'J' && c <= 'N':
		return uint32(c-'J') + 17
	case c >= 'P' && c <= 'Z':
		return uint32(c-'P') + 22
	case c >= 'a' && c <= 'k':
		return uint32(c-'a') + 33
	case c >= 'm' && c <= 'z':
		return uint32(c-'m') + 44
	}
	return 0xff
}

// base58Decode decodes s into dst and returns the decoded prefix of dst.
// It fails with ErrBase58 on a character outside the alphabet and with
// ErrKeyTooLong when s exceeds maxBase58Len.
func base58Decode(dst *[maxBase58Bytes]byte, s string) ([]byte, error) {
	if len(s) > maxBase58Len {
		return nil, ErrKeyTooLong
	}
	zeros := 0
	for zeros < len(s) && s[zeros] == '1' {
		zeros++
	}
	// Big-endian accumulator in the tail of dst; n is its used length.
	n := 0
	for i := zeros; i < len(s); i++ {
		carry := base58Digit(s[i])
		if carry == 0xff {
			return nil, ErrBase58
		}
		for j := 0; j < n; j++ {
			k := maxBase58Bytes - 1 - j
			carry += 58 * uint32(dst[k])
			dst[k] = byte(carry)
			carry >>= 8
		}
		for carry > 0 {
			n++
			dst[maxBase58Bytes-n] = byte(carry)
			carry >>= 8
		}
	}
	if zeros+n > maxBase58Bytes {
		return nil, ErrKeyTooLong
	}
	start := maxBase58Bytes - n - zeros
	for i := start; i < start+zeros; i++ {
		dst[i] = 0
	}
	return dst[start:], nil
}

// appendBase58 appends the base58btc encoding of src (at most 96 bytes, which
// every caller guarantees) to dst.
func appendBase58(dst, src []byte) []byte {
	var buf [2 * maxBase58Bytes]byte // 96 bytes need at most 132 digits
	zeros := 0
	for zeros < len(src) && src[zeros] == 0 {
		zeros++
	}
	n := 0 // digits used, little-endian at the end of buf
	for _, b := range src[zeros:] {
		carry := uint32(b)
		for j := 0; j < n; j++ {
			k := len(buf) - 1 - j
			carry += uint32(buf[k]) << 8
			buf[k] = byte(carry % 58)
			carry /= 58
		}
		for carry > 0 {
			n++
			buf[len(buf)-n] = byte(carry % 58)
			carry /= 58
		}
	}
	for i := 0; i < zeros; i++ {
		dst = append(dst, '1')
	}
	for _, d := range buf[len(buf)-n:] {
		dst = append(dst, base58Alphabet[d])
	}
	return dst
}
