// Package identity resolves account DIDs to what the relay needs to verify
// their events: the #atproto signing key, the PDS host and the claimed handle
// (digest §8), behind a cache sized for tens of millions of accounts.
//
// # Resolution
//
// did:plc:<id> is fetched from {PLCURL}/did:plc:<id>; did:web:<host> from
// https://<host>/.well-known/did.json. 404 and 410 mean "no identity"
// (ErrNotFound). Bodies are capped (MaxDocBytes), always drained and
// closed, redirects are not followed, and concurrent lookups of one DID
// share one resolution.
//
// # A PLC directory under load
//
// The PLC directory answers in tens to hundreds of milliseconds,
// rate-limits, fails a share of requests and now and then never answers
// one (issue 16). A failure of that kind says nothing about the DID, and
// the relay rejects the frames of an identity it cannot resolve, so:
//
//   - Every PLC request is paced (limit.go): at most PLCMaxRate a second,
//     evenly spaced; a 429 cuts the pace by 30 % (once per round of 429s)
//     and holds every PLC request until its Retry-After (at most
//     PLCMaxRetryAfter); answers raise the pace back slowly (AIMD). The
//     relay settles just under the directory's limit instead of bursting
//     into it.
//   - A transient failure (429, 5xx, timeout, transport error:
//     Reason.Transient) of a did:plc is retried up to PLCRetries times,
//     after a jittered exponential backoff (after a 429, when the pace
//     allows). A first attempt has a quarter of PLCRequestTimeout (at
//     most twice PLCHedgeAfter), each retry twice the previous quarter: a
//     request lost by the directory costs little, a slow directory is
//     still waited for.
//   - An attempt not answered after PLCHedgeAfter (750 ms) sends one
//     second request for the DID, the hedge (hedge.go), and the first
//     answer wins; the other is cancelled. A lost request then costs the
//     hedge delay, not the attempt's timeout: the relay holds a host's
//     frames behind its earliest unresolved one. One hedge per
//     resolution, on a free PLC token and a turn in the pace, none while
//     a 429 holds the pace down.
//   - What still fails transiently is cached for plcFailureTTL (5 s)
//     only, not NegativeTTL: enough that a burst of frames of the DID does
//     not start a resolution each, short enough to say nothing lasting.
//     Retry ignores it; Retryable tells callers which failures to wait
//     out (the relay parks their frames and retries).
//   - After breakerStreak failures in a row with no answer for 5 s the
//     directory is taken for down: one probe request a second, the other
//     resolutions fail at once with ErrUnavailable, until it answers.
//   - Definitive failures (not found, an unusable document) are cached
//     for NegativeTTL and never retried; did:web failures get no retry
//     either (the host is anyone's).
//
// Metrics: relay_identity_plc_retries_total,
// relay_identity_plc_hedges_total (hedges sent),
// relay_identity_plc_hedge_wins_total (hedges whose answer was taken),
// relay_identity_plc_rate_limited_total (429s), relay_identity_plc_rate
// (the pace, requests/s), relay_identity_plc_unavailable (the breaker),
// relay_identity_resolve_errors_total{reason} per failed resolution.
//
// # Hostile did:web hosts
//
// Anyone can publish a did:web, and its host may never answer. The two
// methods therefore share nothing on the way out: PLC requests have their
// own client, PLCMaxInFlight tokens and PLCRequestTimeout; did:web requests
// theirs, WebMaxInFlight tokens, at most WebMaxPerDomain per domain (the
// host's last two labels), and WebRequestTimeout counted from the moment a
// resolution starts waiting for a slot. Stalled did:web hosts cost did:web
// DIDs a short wait and never delay a did:plc.
//
// A did:web host must be a domain name (no IP literal) on the default
// port. Both clients dial public addresses only (engine/netguard, checked
// after DNS resolution): a document cannot point the relay at its own
// network. Config.AllowInsecureHosts, the development switch, allows http,
// did:web ports and loopback destinations; Config.PLCAllowPrivate lets an
// operator's PLC mirror live on the local network.
//
// # Resolving ahead
//
// The relay asks twice per frame: when it arrives and when a worker
// processes it, possibly much later. Prefetch (arrival) starts resolving a
// DID the cache lacks, so the worker's Lookup joins the request or hits the
// cache. An #identity event must be answered with a document fetched after
// it arrived, yet frames queued before it must keep the identity they were
// sent under: Refresh (arrival) starts a resolution that stays out of the
// cache, keyed by the DID and a tag naming the event, and Reresolve (the
// worker, in order) purges the DID and takes exactly that resolution,
// waiting only for what is left of it. Events of one DID that arrive
// while its refresh has not sent its request yet share it: its document
// is fetched after all of them arrived. Both are bounded: running ones by
// a multiple of their method's request limit (each is a goroutine),
// finished refreshes not yet taken by maxRefreshes.
//
// # Cache layout
//
// The cache has Shards shards, each a mutex over an open-addressing index
// and a dense array of fixed-size records:
//
//	index: []uint32, linear probing, at most 4/5 full, grown by 1/4:
//	       tag (8 bits of the DID's hash) | record number + 1 (24 bits)
//	records: chunks of 64, each record 64 pointer-free bytes:
//	       host ref u32 | handle offset u32 | expires u32 | touched u16 |
//	       id [15] | flags u8 | key (curve u8, compressed point [33])
//
// id is the did:plc identifier decoded (24 base32 characters, 15 bytes);
// for a did:web it holds the offset and length of the DID in the shard's
// arena, an append-only byte slice that also holds handles (a length
// byte, then the bytes). flags holds the Reason of a cached failure and
// the did:web bit. A delete closes the probe run (backward shift, no
// tombstones) and moves the last record into the hole. Everything is
// pointer-free, so 40 million identities cost the garbage collector
// nothing to scan. An identity costs the 64-byte record, 4-6 bytes of
// index and 1 + its handle's length of arena: about 74 bytes beyond the
// handle at 2 million entries (TestBytesPerEntry measures it).
//
// PDS hosts are interned in a table of two generations (at most MaxHosts
// names and 1/16 of MaxCacheBytes): a record holds a ref, numbered across
// generations so that a ref names one host for the table's life. When the
// current generation fills, the older one is dropped, records naming it
// become misses, and hits on the surviving older generation copy their
// host forward. Times are seconds since the resolver started.
//
// Invariants: arena bytes below its length are never rewritten, so handle
// strings returned by Lookup alias the arena safely (compaction copies into
// a new arena and leaves the old one to the GC). Each shard's accounted
// bytes (index, chunks and arena capacity, exactly what it holds) stay
// within their share of MaxCacheBytes (15/16, split evenly) after every
// insert: inserts evict by random sampling, preferring expired entries,
// then the least recently touched.
//
// # The disk tier
//
// With Config.Store set, the cache is the hot set of a larger tier kept in
// the store (identity rows, store/identity.go): DID → key, PDS host,
// handle and the time the document was fetched. Lookups go memory, then
// disk, then network:
//
//   - a memory miss reads the row (a Pebble point lookup: microseconds,
//     or one disk read) in the caller; Prefetch's flights read it in
//     their goroutine before asking for a request slot;
//   - a row younger than TTL is cached with the TTL it has left, so a
//     restart keeps every expiry where it was;
//   - a row past TTL but within DiskMaxAge is served (cached for a few
//     seconds) while the DID is re-resolved in the background, bounded as
//     Prefetch is: a relay that was down longer than TTL comes back at
//     full speed and refreshes as it goes; past DiskMaxAge a row is
//     neither served nor kept.
//
// Every fetched identity is queued for one writer goroutine, which
// commits the queue every 250 ms (or at 1,024 rows) in one NoSync batch:
// no resolution waits for the disk, let alone an fsync. Refresh and
// Reresolve results are written like any other; Purge and Reresolve
// delete the row before they return. A sweep walks the rows (4,096 a
// second) deleting those past DiskMaxAge, and while the row estimate is
// above DiskMaxRows also those past TTL; above it new rows are not
// written.
//
// # Crash safety
//
// A crash loses at most the rows queued since the last commit; they are
// resolved again. It never leaves a damaged row or a wrong one:
//
//   - Pebble checksums every WAL record and replays the WAL up to the first
//     torn one, so a batch is applied whole or not at all; a row is keyed
//     by its DID and holds only that DID's document, and a row that does
//     not decode is deleted on sight and never served.
//   - Writes reach Pebble in the order memory saw them: rows are queued
//     under the resolver lock that orders the cache, the queue keeps only
//     a DID's newest row, and a delete (commitMu) waits for a batch being
//     committed and drops the queued row of its DID, so an older row never
//     lands after a newer one or after a delete.
//   - The WAL is one sequential log and recovery keeps a prefix of it. The
//     relay persists an #identity event (fsynced) only after Reresolve has
//     returned, and Reresolve's delete was committed before that: any
//     crash that keeps the event keeps the delete, so the rotated key is
//     never served again after a restart. The new key is written later,
//     and is there or absent.
//   - A lookup that read a row concurrently with a Purge of the same DID
//     does not cache it (Resolver.purging, purgeGen), so memory cannot
//     hand a purged row back to disk or to later lookups.
//
// TestDiskCrashNeverWrong checks this on a power-loss clone of the
// filesystem taken with rows still queued.
package identity
