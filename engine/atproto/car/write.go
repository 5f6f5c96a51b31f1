package car

import (
	"encoding/binary"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/dagcbor"
)

// AppendHeader appends a CAR v1 header with the given roots (canonical key
// order: roots, version) to dst. Callers must pass at least one root.
func AppendHeader(dst []byte, roots ...cid.CID) []byte {
	n := 1 + 6 + dagcbor.IntLen(int64(len(roots))) + 8 + 1
	for _, c := range roots {
		n += linkLen(c)
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = dagcbor.AppendMapHeader(dst, 2)
	dst = dagcbor.AppendText(dst, "roots")
	dst = dagcbor.AppendArrayHeader(dst, len(roots))
	for _, c := range roots {
		dst = dagcbor.AppendCIDLink(dst, c)
	}
	dst = dagcbor.AppendText(dst, "version")
	return dagcbor.AppendUint(dst, 1)
}

// AppendBlock appends one section (varint length, binary CID, data) to dst.
func AppendBlock(dst []byte, c cid.CID, data []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(c)+len(data)))
	dst = append(dst, c...)
	return append(dst, data...)
}

// linkLen is the encoded size of dagcbor.AppendCIDLink(nil, c).
func linkLen(c cid.CID) int {
	return 2 + dagcbor.IntLen(int64(len(c)+1)) + 1 + len(c)
}
