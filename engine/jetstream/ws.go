package jetstream

import "encoding/binary"

// wsHeaderMax is the largest header putWSHeader writes (2 + 8 length bytes;
// server frames are never masked).
const wsHeaderMax = 10

// WebSocket opcodes and the FIN bit (RFC 6455 §5.2), for the frames the
// endpoint builds itself. Jetstream sends JSON as text messages and zstd
// frames as binary messages.
const (
	wsFin    = 0x80
	wsText   = 0x1
	wsBinary = 0x2
	wsClose  = 0x8
	wsPing   = 0x9
	wsPong   = 0xa
)

// Close codes (RFC 6455 §7.4.1).
const (
	closeNormal    = 1000
	closeGoingAway = 1001
	closePolicy    = 1008
	closeTooBig    = 1009
	closeInternal  = 1011
)

// putWSHeader writes the header of an unmasked final frame with opcode op
// and an n-byte payload into dst (len ≥ wsHeaderMax) and returns its size:
// what ws.WriteHeaderBuffer writes, without the io.Writer call, so a batch
// of headers goes into one writev beside the shared payloads.
func putWSHeader(dst []byte, op byte, n int) int {
	dst[0] = wsFin | op
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
