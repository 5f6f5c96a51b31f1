package firehose

import "encoding/binary"

// This file holds the only bytes the hub writes itself: the relay-generated
// control frames (error and #info) in canonical DAG-CBOR, and the WebSocket
// frame headers. It is self-contained so the lead can swap the CBOR part for
// engine/event once that exists.
//
// Canonical DAG-CBOR (spec §3.2): shortest-form lengths, map keys sorted
// shorter first, then bytewise. So the error header is {op:-1} =
// a1 62 6f 70 20, the error body is {error, message}, the #info header is
// {t:"#info", op:1} (t before op) and the #info body is {name, message}.

// Names of the error and info frames the relay generates (spec §10, §10.5).
const (
	errNameFutureCursor    = "FutureCursor"
	errNameConsumerTooSlow = "ConsumerTooSlow"
	infoNameOutdatedCursor = "OutdatedCursor"
)

// cborHead appends a CBOR head of major type major with argument n in its
// shortest form.
func cborHead(dst []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(dst, m|byte(n))
	case n <= 0xff:
		return append(dst, m|24, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, m|25), uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(dst, m|26), uint32(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, m|27), n)
	}
}

// cborText appends s as a CBOR text string.
func cborText(dst []byte, s string) []byte {
	return append(cborHead(dst, 3, uint64(len(s))), s...)
}

// appendErrorFrame appends an error frame (header {op:-1}, body
// {error, message?}); message is omitted when empty.
func appendErrorFrame(dst []byte, name, message string) []byte {
	dst = append(dst, 0xa1, 0x62, 'o', 'p', 0x20)
	if message == "" {
		return cborText(cborText(append(dst, 0xa1), "error"), name)
	}
	dst = cborText(cborText(append(dst, 0xa2), "error"), name)
	return cborText(cborText(dst, "message"), message)
}

// appendInfoFrame appends an #info frame (header {t:"#info", op:1}, body
// {name, message?}); message is omitted when empty.
func appendInfoFrame(dst []byte, name, message string) []byte {
	dst = append(dst, 0xa2, 0x61, 't')
	dst = cborText(dst, "#info")
	dst = append(dst, 0x62, 'o', 'p', 0x01)
	if message == "" {
		return cborText(cborText(append(dst, 0xa1), "name"), name)
	}
	dst = cborText(cborText(append(dst, 0xa2), "name"), name)
	return cborText(cborText(dst, "message"), message)
}

// controlFrames are the pre-encoded frames a hub sends; static after NewHub.
type controlFrames struct {
	futureCursor    []byte
	consumerTooSlow []byte
	outdatedCursor  []byte
}

func newControlFrames() controlFrames {
	return controlFrames{
		futureCursor:    appendErrorFrame(nil, errNameFutureCursor, "cursor is beyond the newest event"),
		consumerTooSlow: appendErrorFrame(nil, errNameConsumerTooSlow, "consumer fell out of the replay window"),
		outdatedCursor: appendInfoFrame(nil, infoNameOutdatedCursor,
			"requested cursor is older than the replay window; starting from the oldest event"),
	}
}
