// Package fleet runs N simulated PDS hosts in one process, each on its own
// 127.0.0.1 listener named localhost:PORT, with real accounts (keys,
// internal/repo repositories, did:plc documents in a bench/plc fake
// directory), a workload model that drives them, and per-host fault
// injection, so a relay can be tested and loaded against many hosts at once.
//
// # Hosts
//
// Every host serves, like a reference PDS:
//
//   - com.atproto.sync.subscribeRepos with a per-host seq and cursor replay
//     from an in-memory history of Options.HistoryEvents entries (spec
//     §9.3: no cursor = live; cursor = events with seq > cursor then live;
//     cursor older than the history = #info OutdatedCursor then the whole
//     history; cursor > head = FutureCursor and close; bad cursor = 400; a
//     subscriber that falls out of the history gets ConsumerTooSlow);
//   - getRepo (the full CAR of repo.ExportCAR), getLatestCommit,
//     getRepoStatus, listRepos (paged, cursor = accounts already listed),
//     describeServer and _health;
//   - and, when told (Host.RequestCrawl), POSTs {"hostname":"localhost:PORT"}
//     to a relay's com.atproto.sync.requestCrawl.
//
// With Options.TLS every host serves https:// and wss:// instead, with a
// certificate from that test CA (bench/testca), under the name
// pds-N.localhost:PORT: names under .localhost are loopback (RFC 6761),
// and a relay's development switch dials them on 127.0.0.1 over TLS, while
// plain localhost:PORT stays ws://. The relay must trust the CA (a
// test-only setting); DID documents carry https://pds-N.localhost:PORT.
//
// Cost: an idle host is one listener and the one goroutine serving it; a
// subscriber adds its handler goroutine and one goroutine reading control
// frames, nothing per idle subscriber beyond those. TestManyHosts measures
// 3,000 hosts.
//
// # Accounts and events
//
// Account creation follows the reference PDS: #identity, #account active,
// the first #commit (no ops, since null, no prevData), #sync of the same
// rev. Writes are one #commit each (sync 1.1: since, prevData, op prev,
// CAR slices with the MST proof blocks, all from internal/repo). A handle
// change is #identity; deactivation is #account active:false
// "deactivated", and the account's next action reactivates it with
// #account, #identity, #sync; deletion is #account "deleted" and the end of
// the account. Fleet.Migrate and Fleet.RotateKey update the PLC and emit
// the matching events.
//
// # Workload
//
// Workload is shared with bench/generate: Zipf over hosts (a few large hosts
// carry most traffic, most are nearly idle), Zipf over a host's accounts,
// the op mix, ops per commit, record sizes and the shares of status events.
// Planner turns it into a reproducible sequence of Actions; an account's
// own random source chooses the details, so plans replay identically when
// accounts are executed in parallel.
//
// # Faults
//
// Host.Inject commits one FaultKind and counts it (Host.FaultCounts,
// Fleet.FaultCounts); the doc of each kind says what a correct relay must
// do with it. Live-only fault frames reach only connections open at
// injection time and never reappear on cursor replay, so a relay that drops
// the connection and reconnects with its cursor resumes cleanly.
package fleet
