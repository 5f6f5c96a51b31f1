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
// share one request.
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
// network. Config.AllowInsecure, the development switch, allows http,
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
// waiting only for what is left of it. Both are bounded: running ones by
// a multiple of their method's request limit (each is a goroutine),
// finished refreshes not yet taken by maxRefreshes.
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
//	hostGen u32 | hostID u32 | handleOff u32 | expires u32 | touched u32 |
//	key (curve u8, compressed point [33]) | handleLen u8 | reason u8
//
// so the plc map holds no pointers and costs the garbage collector nothing.
// PDS hosts are interned in a table of two generations ((gen, id) → name,
// at most MaxHosts names and 1/16 of MaxCacheBytes): when the current
// generation fills, the older one is dropped, entries naming it become
// misses, and hits on the surviving older generation copy their host
// forward. Times are seconds since the resolver started. A non-zero reason
// marks a cached failure.
//
// Invariants: arena bytes below its length are never rewritten, so handle
// strings returned by Lookup alias the arena safely (compaction copies into
// a new arena and leaves the old one to the GC). Each shard's accounted bytes
// (a fixed per-entry cost plus arena length) stay within their share of
// MaxCacheBytes (15/16, split evenly) after every insert: inserts evict by random sampling, preferring expired
// entries, then the least recently touched. TestBytesPerEntry checks the
// fixed costs against runtime.MemStats.
package identity
