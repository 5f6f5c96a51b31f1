// Package syntax validates the AT Protocol identifier strings a relay meets
// in every frame: DIDs, handles, NSIDs, record keys, repository paths
// (collection/rkey MST keys), TIDs, AT-identifiers and datetimes, plus the
// looser Lexicon string formats (at-uri, uri, cid, language).
//
// Each format has two faces:
//
//   - Check… functions take a []byte view, typically aliasing a frame buffer,
//     and return nil or one of the constant Error reasons. They never
//     allocate and never retain the slice, so they are safe on the hot path.
//   - Parse… functions take a string and return a typed string (DID, Handle,
//     NSID, RecordKey, TID, Datetime, …) for code that keeps the value.
//
// Both faces share one generic implementation, so the two can never drift.
// The rules follow the spec digest §2 (relay-protocol.md) and the interop
// fixtures in shared/fixtures/interop/syntax; where the digest and the
// fixtures differ, the fixtures win (see §17.15, §17.16, §17.22).
//
// # Strictness
//
// Syntax checks are exactly the published regular expressions plus their
// length limits, implemented as hand-written byte loops. Two choices go past
// the regexes and are deliberate:
//
//   - DIDs: a '%' must be followed by two hex digits (the spec makes this
//     check optional; no DID in circulation violates it).
//   - Datetimes have a separate semantic parse (ParseDatetime) that rejects
//     month 00, hour 25, second 60/61, day 31 of a 30-day month and instants
//     that normalize to a year before 0000.
//
// CheckBlessedDID adds the relay's method policy on top of generic DID
// syntax: did:plc with a 24-character lowercase base32 identifier, or did:web
// with a lowercase hostname (port only for localhost).
//
// NormalizeHost is the relay's one hostname rule: requestCrawl, the stored
// host rows, upstream dials and the #atproto_pds authority check all pass
// their host through it, with the development switch as a parameter, so
// the same host is the same string on every path.
//
// # TIDs
//
// A TID is 13 characters of the sortable base32 alphabet
// "234567abcdefghijklmnopqrstuvwxyz" encoding a 64-bit integer: top bit 0,
// 53 bits of microseconds since the Unix epoch, 10 bits of clock id.
// Because the alphabet is in ASCII order and the length is fixed, comparing
// two valid TIDs as bytes equals comparing their integers. Worked example:
// "3lmxrbvasth2t" decodes to 0x18CBB73ECD8CB419 (hex), whose micros are
// 1744846833541933 (2025-04-16T23:40:33.541933Z) and whose clock id is 25.
package syntax
