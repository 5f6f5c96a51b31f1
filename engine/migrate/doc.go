// Package migrate carries a running reference relay's operator state (indigo
// cmd/relay) into this relay's store, so an operator can switch relays
// without losing the host list, the bans and takedowns, or consumers'
// cursors. It backs `relay migrate`.
//
// # Steps
//
// Fetch reads the reference through the interfaces it serves:
//
//   - GET /admin/pds/list (HTTP Basic admin:<password>): every host's
//     hostname, TLS flag, cursor, account limit, and whether it is
//     registered (active) or blocked (banned). The reference answers at
//     most its first 10,000 hosts here, without paging.
//   - GET /xrpc/com.atproto.sync.listHosts (public, paged): the exact
//     status and cursor of every host that ever delivered an event, which
//     also covers hosts past the 10,000.
//   - GET /admin/subs/listDomainBans and /admin/repo/takedowns (paged).
//   - GET /metrics on its metrics listener: disk_persister_current_seq, the
//     seq its next event will get.
//
// Trust is not in any of those answers: the reference marks a host trusted
// when its name matches RELAY_TRUSTED_DOMAINS at first crawl, so NewPlan
// applies the same patterns (default "*.host.bsky.network").
//
// NewPlan compares that snapshot with the store and decides every write;
// Plan.Print shows it (the dry run); Apply performs it: domain bans, then
// hosts (created, or updated to the reference's status, trust, account
// limit and cursor), then takedowns (store.ImportTakedown, which creates
// the account row if this relay has not seen the account), and last the
// seq (store.AdvanceSeq). Every step is idempotent, so an interrupted
// migration is finished by running it again.
//
// # Cursors
//
// Hosts resume from the reference's persisted cursors, which trail its
// live position by up to its flush interval and by whatever it ingests
// until it is stopped: this relay re-reads that stretch from each PDS, so
// nothing is lost and consumers may see some events twice (with new seqs).
// Consumers' cursors are the reference's seqs; this relay's next seq is
// set to the reference's next seq plus a margin (PlanConfig.SeqMargin) so
// that every cursor a consumer received from the reference before the
// switch is below this relay's first event, never a FutureCursor and never
// a seq that means another event here.
//
// # Concurrency
//
// Fetch, NewPlan and Apply are plain functions; Apply needs the store to
// itself (no relay running on it).
package migrate
