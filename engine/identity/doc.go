// Package identity resolves account DIDs to what the relay needs to verify
// their events: the #atproto signing key, the PDS host and the claimed handle
// (digest §8), behind a cache sized for tens of millions of accounts.
//
// # Resolution
//
// did:plc:<id> is fetched from {PLCURL}/did:plc:<id>; did:web:<host> from
// https://<host>/.well-known/did.json (http with Config.AllowInsecure; a
// %3A-encoded port is accepted for development). 404 and 410 mean "no
// identity" (ErrNotFound). Bodies are capped (MaxDocBytes), always drained
// and closed, redirects are not followed, and every request runs under
// RequestTimeout with at most MaxInFlight at once over one shared transport.
// Concurrent lookups of one DID share one request.
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
// waiting only for what is left of it. Both are bounded: running ones by
// a multiple of MaxInFlight (each is a goroutine), finished refreshes not
// yet taken by maxRefreshes.
//
// # Cache layout
//
// The cache has Shards shards, each a mutex over two Go maps:
//
//	plc: [15]byte (the 24 base32 characters of a did:plc, decoded) → entry
//	web: DID string (everything else, i.e. did:web)                 → entry
//
// and an append-only arena of handle bytes. An entry is 56 pointer-free
// bytes:
//
//	hostID u32 | handleOff u32 | expires u32 | touched u32 |
//	key (curve u8, compressed point [33]) | handleLen u8 | reason u8
//
// so the plc map holds no pointers and costs the garbage collector nothing.
// PDS hosts are interned in one table (id → name). Times are seconds since
// the resolver started. A non-zero reason marks a cached failure.
//
// Invariants: arena bytes below its length are never rewritten, so handle
// strings returned by Lookup alias the arena safely (compaction copies into
// a new arena and leaves the old one to the GC). Each shard's accounted bytes
// (a fixed per-entry cost plus arena length) stay within MaxCacheBytes/Shards
// after every insert: inserts evict by random sampling, preferring expired
// entries, then the least recently touched. TestBytesPerEntry checks the
// fixed costs against runtime.MemStats.
package identity
