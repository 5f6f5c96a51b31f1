// Package wsframe writes the headers of the WebSocket frames a server sends
// (RFC 6455 §5.2: final, unmasked), into a caller's buffer: what
// ws.WriteHeaderBuffer writes, without the io.Writer call, so the firehose
// and the Jetstream stream can batch many headers into one writev beside
// payloads shared between consumers.
package wsframe

import "encoding/binary"

// HeaderMax is the largest header PutHeader writes: 2 bytes and an 8-byte
// length (server frames carry no mask).
const HeaderMax = 10

// Opcodes (RFC 6455 §5.2) and the FIN bit.
const (
	Fin      = 0x80
	OpText   = 0x1
	OpBinary = 0x2
	OpClose  = 0x8
	OpPing   = 0x9
	OpPong   = 0xa
)

// PutHeader writes the header of a final unmasked frame with opcode op and
// an n-byte payload into dst (len(dst) ≥ HeaderMax) and returns its size.
func PutHeader(dst []byte, op byte, n int) int {
	dst[0] = Fin | op
	switch {
	case n <= 125:
		dst[1] = byte(n)
		return 2
	case n <= 0xffff:
		dst[1] = 126
		binary.BigEndian.PutUint16(dst[2:4], uint16(n))
		return 4
	default:
		dst[1] = 127
		binary.BigEndian.PutUint64(dst[2:10], uint64(n))
		return 10
	}
}
