// Package verify is the relay's single validation function for upstream
// #commit and #sync events (spec digest §12.2, §13.1): given a decoded
// event, the host it arrived on, the account's stored state and an identity
// source, it returns a Verdict — Accept, Drop or Ignore — with a reason from
// a closed set (Reason) that doubles as a metric label.
//
// # Order of checks (#commit, first failure decides)
//
//	 2 DID           repo is a did:plc / did:web in normalized form     bad_did
//	 3 host          DID document's PDS == host; one re-resolve         identity_unavailable, wrong_host
//	 4 active        local ∈ {active, throttled} and upstream active    inactive
//	 5 rev           rev is a TID and > stored rev                      bad_rev, stale_rev
//	 6 limits        blocks ≤ 2,000,000 B, ops ≤ 200                    blocks_too_large, too_many_ops
//	 7 commit        CAR parses, every block hashes to its CID,         empty_blocks, bad_car, block_too_large,
//	                 blocks ≤ 1 MB, roots[0] present, canonical v3      missing_commit_block, bad_commit
//	                 commit object
//	   match         commit.did == repo, commit.rev == rev,             commit_did_mismatch, commit_rev_mismatch,
//	                 event commit == roots[0]                           commit_cid_mismatch
//	 8 future rev    rev time ≤ now + 5 min                             future_rev
//	 9 signature     over the unsigned commit; one re-resolve + retry   bad_signature
//	10 fields        tooBig/rebase false, time, since, op shapes,       deprecated_flag, bad_time, bad_since,
//	                 record blocks present and well-formed              bad_op, missing_record, bad_record
//	11 prevData      required once the relay has state                  missing_prevdata
//	12 inversion     ops undone on the CAR's partial MST == prevData    missing_block, inversion_mismatch, bad_mst
//	13 continuity    since == stored rev, prevData == stored data       (accepted; Verdict.Break)
//
// Step 1 (frame size, decoding, upstream seq order) belongs to the caller.
// In Lenient mode (spec §12.5) the failures of steps 11–12 and update/delete
// ops without prev (legacy_op) are passed and reported in
// Verdict.Tolerated; duplicate op paths are dropped in both modes.
//
// #sync runs steps 2–4, the rev syntax, blocks ≤ 10,000 B, steps 7–9 and the
// time check; an otherwise valid #sync whose rev is not after the stored rev
// is ignored (stale_rev); an accepted one resets the account's state.
//
// # The unsigned commit without re-encoding
//
// The signature covers the commit map without its "sig" entry. The block is
// checked canonical first, and removing one entry from a canonical map
// leaves the others in canonical order, so the unsigned bytes are the map
// head with one pair fewer, then the block's bytes before and after the sig
// entry:
//
//	signed    a6 | 63 did … | 63 rev … | 63 sig 58 40 <64 B> | 64 data … | 64 prev f6 | 67 version 03
//	unsigned  a5 | 63 did … | 63 rev … |                       64 data … | 64 prev f6 | 67 version 03
//
// copied into a reused buffer, with no decoding into values and no
// allocation.
//
// # Ownership and cost
//
// A Validator is per-worker scratch (CAR index, MST inverter, signature
// verifier, buffers) used by one goroutine at a time. NewState in a
// Verdict, like every view into the event, is valid only while the frame
// buffer is. A validation allocates nothing at steady state, except one
// string per change of DID between consecutive calls (the Identities
// interface takes a string; the last one is kept) and the error detail of
// failures. Every block is hashed exactly once, by the CAR reader in step
// 7; the inverter relies on that (mst.Inverter.CheckVerified) and only
// decodes and checks the node blocks.
package verify
