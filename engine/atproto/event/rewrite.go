package event

import (
	"github.com/atrelay/relay/engine/atproto/dagcbor"
)

// RewriteSeq appends to dst a copy of frame whose body seq is seq, copying
// every other byte verbatim (blocks included). frame must be a canonical
// #commit, #sync, #identity or #account frame (as AppendCommit and friends
// write, and as the reference PDS sends); anything else is refused with an
// error and nothing is appended. Fields other than seq are not checked:
// callers pass frames they have decoded or produced. The seq head may change width (5 → 20 000
// 000 000), which shifts the bytes after it but keeps the body canonical,
// because key order does not depend on values. The result equals
// AppendWithSeq of the decoded frame.
//
// dst and frame must not overlap.
func RewriteSeq(dst, frame []byte, seq int64) ([]byte, error) {
	return rewriteSeq(dst, frame, seq, true)
}

// RewriteEncodedSeq is RewriteSeq for a frame this process encoded itself
// (AppendMessage, AppendWithSeq or a RewriteSeq result): it skips the
// whole-body canonical check, which such a frame passes by construction, and
// keeps the structural walk to the seq field. The sequencer stamps every
// event with it; TestRewriteEncodedSeq holds it equal to RewriteSeq on every
// capture frame. dst and frame must not overlap.
func RewriteEncodedSeq(dst, frame []byte, seq int64) ([]byte, error) {
	return rewriteSeq(dst, frame, seq, false)
}

func rewriteSeq(dst, frame []byte, seq int64, check bool) ([]byte, error) {
	if seq < 1 {
		return dst, ErrSeq
	}
	if len(frame) > DefaultMaxFrameBytes {
		return dst, ErrFrameTooLarge
	}
	hn := rewritableHeader(frame)
	if hn == 0 {
		return dst, ErrNotRewritable
	}
	body := frame[hn:]
	// Checking the whole body is cheap (blocks is skipped, not read) and
	// is what makes the splice safe: the output is canonical iff the input
	// was.
	if check {
		if err := dagcbor.Validate(body); err != nil {
			return dst, err
		}
	}
	if len(body) == 0 || dagcbor.Major(body[0]>>5) != dagcbor.MajorMap {
		return dst, ErrBody
	}
	vs, ve, ok := findSeq(body)
	if !ok {
		return dst, ErrNoSeqField
	}
	dst = append(dst, frame[:hn+vs]...)
	dst = dagcbor.AppendInt(dst, seq)
	return append(dst, body[ve:]...), nil
}

// rewritableHeader returns the length of frame's header when it is one of
// the canonical headers of a persisted event, and 0 otherwise.
func rewritableHeader(frame []byte) int {
	for _, h := range [...]string{hdrCommit, hdrSync, hdrIdentity, hdrAccount} {
		if len(frame) >= len(h) && string(frame[:len(h)]) == h {
			return len(h)
		}
	}
	return 0
}

// findSeq locates the value of the top-level "seq" key of a canonical body
// map and returns its byte range. It checks every head and bound it reads,
// so a malformed body (possible on RewriteEncodedSeq's unchecked path) is
// reported, never a panic.
func findSeq(body []byte) (start, end int, ok bool) {
	m, pairs, off, err := dagcbor.ReadHead(body)
	if err != nil || m != dagcbor.MajorMap {
		return 0, 0, false
	}
	for range pairs {
		km, klen, kn, err := dagcbor.ReadHead(body[off:])
		if err != nil || km != dagcbor.MajorText || klen > uint64(len(body)-off-kn) {
			return 0, 0, false
		}
		key := body[off+kn : off+kn+int(klen)]
		off += kn + int(klen)
		vn, err := dagcbor.WellformedFirst(body[off:])
		if err != nil {
			return 0, 0, false
		}
		if string(key) == "seq" {
			if dagcbor.Major(body[off]>>5) != dagcbor.MajorUint {
				return 0, 0, false
			}
			return off, off + vn, true
		}
		if len(key) > 3 {
			// Keys are sorted length-first: no "seq" after a longer key.
			return 0, 0, false
		}
		off += vn
	}
	return 0, 0, false
}
