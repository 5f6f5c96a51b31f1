// Package dagcbor checks and writes the strict DAG-CBOR ("DRISL") subset of
// CBOR that atproto hashes and signs (spec digest §3), without decoding into
// Go values and without allocating.
//
// # Layout
//
// Every CBOR item starts with a head byte: the top three bits are the major
// type, the low five bits the "additional information" (ai):
//
//	ai 0..23   the argument is ai itself             (1-byte head)
//	ai 24      the argument is the next byte          (2-byte head)
//	ai 25      the argument is the next 2 bytes, BE   (3-byte head)
//	ai 26      the argument is the next 4 bytes, BE   (5-byte head)
//	ai 27      the argument is the next 8 bytes, BE   (9-byte head)
//	ai 28..30  reserved (never well formed)
//	ai 31      indefinite length / break (never allowed in DAG-CBOR)
//
// Major types: 0 unsigned int, 1 negative int (-1-arg), 2 byte string,
// 3 text string, 4 array, 5 map, 6 tag, 7 simple values and floats.
//
// Worked example, the canonical frame header {"t": "#commit", "op": 1}:
//
//	a2                      map, 2 pairs
//	61 74                   text(1) "t"       shorter key first
//	67 23 63 6f 6d 6d 69 74 text(7) "#commit"
//	62 6f 70                text(2) "op"
//	01                      uint 1
//
// # Invariants enforced by Validate (canonical atproto DAG-CBOR)
//
//   - every head uses the shortest form for its argument;
//   - no indefinite lengths, no floats, no simple values but false, true, null;
//   - integers fit in a signed 64-bit integer;
//   - text strings are valid UTF-8;
//   - map keys are text strings, unique, sorted by length then bytewise;
//   - the only tag is 42, wrapping a byte string 0x00 ‖ binary CID;
//   - nesting depth ≤ MaxDepth, container lengths ≤ MaxContainerLen, map keys
//     ≤ MaxKeyLen bytes, CIDs ≤ cid.MaxLen bytes;
//   - exactly one item, no trailing bytes.
//
// Envelope applies the liberal frame policy of spec §3.5: the same item rules
// but any key order and any head width. Wellformed is the lenient check for
// record blocks: structure and limits only (RFC 8949 well-formedness).
//
// All checks are pure functions over a byte slice; they are safe for
// concurrent use and return distinct sentinel errors, one per reason.
package dagcbor
