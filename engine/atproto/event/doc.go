// Package event decodes and encodes com.atproto.sync.subscribeRepos frames
// (spec digest §9.2, §10): one binary WebSocket message is two DAG-CBOR
// items, a header map and a body map, with nothing after the body.
//
// # Layout
//
//	frame  := header ‖ body
//	header := {"t": "#commit" | "#sync" | "#identity" | "#account" | "#info", "op": 1}
//	        | {"op": -1}                                 error frame
//	body   := map; its fields depend on t (or {error, message} for op -1)
//
// Canonical headers (shortest key first):
//
//	a2 61 74 67 23 63 6f 6d 6d 69 74 62 6f 70 01   {"t": "#commit", "op": 1}
//	a1 62 6f 70 20                                 {"op": -1}
//
// Body fields, in the canonical key order the encoder writes (§10):
//
//	#commit   ops rev seq repo time blobs since blocks commit rebase tooBig prevData
//	  op      cid path prev action
//	#sync     did rev seq time blocks
//	#identity did seq time handle
//	#account  did seq time active status
//	#info     name message
//	error     error message
//
// # Decoding policy
//
// Envelopes are decoded liberally (§3.5): keys in any order, unknown fields
// ignored, but every item must be DAG-CBOR (definite lengths, text keys, no
// floats, tag 42 only, valid UTF-8) and known fields must have their types.
// Unknown op values and unknown or legacy types (#handle, #migrate,
// #tombstone) decode to KindUnknown with a nil error: the caller skips the
// frame. Any other error means the frame is malformed and, per §9.2, the
// connection should be dropped. Deprecated #commit fields (blobs, tooBig,
// rebase) may be absent; every other lexicon-required field must be present.
// Absent and null stay distinct where the protocol distinguishes them: see
// the field docs of Commit, Op, Identity and Account.
//
// Limits (frame size, #commit.blocks, ops, #sync.blocks) live in Limits; the
// frame size is checked before any byte is decoded.
//
// # Ownership
//
// A Decoder is per-worker scratch: one goroutine at a time. Decode fills a
// caller-owned Message whose byte slices and CIDs are views into the frame:
// they stay valid only while the frame buffer is neither reused nor
// released. Reusing a Message reuses its Ops and Blobs capacity, so decoding
// does not allocate once the slices have grown.
//
// Encoding functions append canonical DAG-CBOR (byte-identical to any
// canonical encoder) to a caller-owned buffer. RewriteSeq is the fast path
// for frames that are already canonical: it replaces only the body's seq.
package event
