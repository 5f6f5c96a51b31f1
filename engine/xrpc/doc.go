// Package xrpc serves the relay's public HTTP API on the API listener: the
// com.atproto.sync queries and procedures a relay answers (digest §16) and
// the /xrpc/_health probe. It is HTTP glue only: account and host data are
// read from the store, and the one behaviour that changes the running relay
// (requestCrawl) is asked of an Engine the caller supplies.
//
// # Shapes
//
// Response bodies follow the lexicons in shared/lexicons/com/atproto/sync/
// field for field; errors are {"error": "<Name>", "message": "..."} with the
// lexicon's error name where it has one:
//
//	listRepos        GET  limit 1–1000 (500), cursor  {cursor?, repos:[{did, head, rev, active, status?}]}
//	getLatestCommit  GET  did                        {cid, rev}    404 RepoNotFound / RepoNotSynchronized,
//	                                                               403 RepoTakendown / RepoSuspended / RepoDeactivated
//	getRepoStatus    GET  did                        {did, active, status?, rev?}  404 RepoNotFound
//	getRepo          GET  did, since?                302 to the account's PDS      404 RepoNotFound, 403 as above
//	listHosts        GET  limit 1–1000 (200), cursor  {cursor?, hosts:[{hostname, seq, accountCount, status}]}
//	getHostStatus    GET  hostname                   {hostname, seq, accountCount, status}  404 HostNotFound
//	requestCrawl     POST {hostname}                 200, empty body
//	notifyOfUpdate   POST {hostname}                 as requestCrawl (deprecated alias)
//
// getRepo's PDS is the one of the cached DID document, else the host the
// account's events come from: a public request never makes the relay
// resolve a DID (Resolver.Cached).
//
// Cursors are opaque decimal strings: the last account uid (creation order)
// or the last host id (first-seen order) of the page. A response carries a
// cursor only when its page is full, so a client stops when it is absent.
//
// # Status view
//
// An account has two statuses in the store: the one its host reports and
// the relay's own (local). The API shows one: a local takedown or
// suspension wins, then any inactive upstream status, then local
// throttling; "status" is sent only when "active" is false (digest §17.10).
//
// # Limits
//
// requestCrawl makes the engine probe a host it may then subscribe to, so
// each client (an IPv4 address or IPv6 /64, behind Config.TrustedProxies
// the X-Forwarded-For client) gets Config.CrawlRequestsPerMinute calls a
// minute; beyond that it is answered 429 RateLimitExceeded before the
// engine is asked. Development hosts (localhost:PORT) are exempt. The
// engine adds the global limits (new hosts per day, probes in flight).
//
// # Concurrency
//
// A Server is immutable after New and safe for concurrent use.
package xrpc
