package upstream

import "github.com/atrelay/relay/engine/dagcbor"

// maxHeaderEntries bounds the header map isErrorFrame walks; the engine's
// dispatch scan refuses bigger maps too.
const maxHeaderEntries = 64

// isErrorFrame reports whether a message's CBOR header says op -1. This is
// the only CBOR the loop reads: an error frame ends the stream and counts as
// a failure (see reader.deliver), and the loop must see every frame the
// engine's dispatch scan (relay.Peek) takes for one, or a host could dodge
// the backoff by encoding its header oddly. So it walks the header with the
// same rules, any key order, the last "op" winning; it may say yes to a
// few headers that scan rejects, which only ends a misbehaving stream.
// Bytes after the header are not looked at. It does not allocate.
func isErrorFrame(b []byte) bool {
	m, n, hn, err := dagcbor.ReadHead(b)
	if err != nil || m != dagcbor.MajorMap || n > maxHeaderEntries {
		return false
	}
	b = b[hn:]
	isErr := false
	for range n {
		km, kl, kn, err := dagcbor.ReadHead(b)
		if err != nil || km != dagcbor.MajorText || kl > uint64(len(b)-kn) {
			return false
		}
		key := b[kn : kn+int(kl)]
		b = b[kn+int(kl):]
		if string(key) == "op" {
			vm, v, vn, err := dagcbor.ReadHead(b)
			if err != nil || v > 1<<62 || (vm != dagcbor.MajorUint && vm != dagcbor.MajorNegInt) {
				return false
			}
			isErr = vm == dagcbor.MajorNegInt && v == 0 // -1 is negint 0
			b = b[vn:]
			continue
		}
		sn, err := dagcbor.WellformedFirst(b)
		if err != nil {
			return false
		}
		b = b[sn:]
	}
	return isErr
}
