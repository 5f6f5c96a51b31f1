// Package store is the relay's durable state: the event log consumers replay
// from, each account's last accepted commit and status, each upstream host's
// cursor and status, and the domain-ban list, all in one embedded Pebble
// database.
//
// # Key layout
//
// Every key starts with a one-byte prefix. The prefix bytes and the value
// layouts below are on disk: never renumber or reorder them; a change that
// old binaries cannot read bumps SchemaVersion. Integers in keys are
// big-endian so that byte order equals numeric order; integers in values are
// big-endian fixed width unless marked uvarint (unsigned LEB128).
//
//	prefix  key                        value                                   order
//	0x01    01 'v'                     be32 schema version                     -
//	0x01    01 's'                     be64 last assigned seq                  -
//	0x01    01 'u'                     be64 last assigned account uid          -
//	0x01    01 'h'                     be32 last assigned host id              -
//	0x01    01 'c'                     be32 UTC day ‖ be32 new hosts that day  -
//	0x02    02 be64(seq)               event (below)                           seq
//	0x03    03 did                     account (below)                         did bytes
//	0x04    04 be64(uid)               did                                     creation order
//	0x05    05 be32(hostID)            host (below)                            first seen
//	0x06    06 hostname                be32 hostID                             hostname
//	0x07    07 domain                  empty                                   domain
//	0x08    08 be64(unix second)       be64 first seq committed in that second time
//	0x09    09 did                     be64 hidden-through seq                 did bytes
//	0x0A    0A did                     identity (below)                        did bytes
//
// Event value (version 1):
//
//	0      version = 1
//	1      kind (KindCommit=1, KindSync=2, KindIdentity=3, KindAccount=4)
//	2      flags (0; reserved)
//	3..10  commit time, be64 Unix milliseconds (the store's clock)
//	11..   uvarint len(did) ‖ did ‖ frame bytes exactly as consumers receive them
//
// Account value (version 1):
//
//	0       version = 1
//	1..8    be64 uid (assigned on creation, never reused)
//	9..12   be32 host id
//	13      upstream status (AccountStatus)
//	14      local status (LocalStatus)
//	15..22  be64 last seen, Unix milliseconds
//	23..    uvarint len ‖ rev, uvarint len ‖ commit CID, uvarint len ‖ data CID
//
// Host value (version 1):
//
//	0       version = 1
//	1       status (HostStatus)
//	2       flags (bit 0: trusted)
//	3..10   be64 upstream cursor (last persisted upstream seq; 0 = none)
//	11..18  be64 account limit
//	19..26  be64 account count
//	27..34  be64 events persisted from this host
//	35..42  be64 first seen, Unix ms
//	43..50  be64 last connect, Unix ms
//	51..58  be64 last error, Unix ms
//	59..    uvarint len ‖ hostname, uvarint len ‖ last error text
//
// Meta 'c' is the public requestCrawl budget: the UTC day it counts (days
// since 1970-01-01) and how many new hosts requestCrawl added on it, so a
// restart does not hand out a fresh daily budget. Absent means none yet.
//
// Identity value (version 1), written NoSync outside the writer lock (see
// identity.go for why that is crash-safe):
//
//	0       version = 1
//	1..4    be32 resolved at, Unix seconds
//	5       key type (KeyP256=1, KeyK256=2)
//	6..38   SEC1 compressed point of the #atproto key
//	39..    uvarint len ‖ PDS host, uvarint len ‖ handle (may be empty)
//
// Worked example: the event with seq 5, a #commit by did:plc:abc committed at
// 2026-11-25T22:17:57.806Z, has key 02 00 00 00 00 00 00 00 05 and value
//
//	01 01 00 00 00 01 a2 14 c9 79 2e 0b 64 69 64 3a 70 6c 63 3a 61 62 63 <frame>
//	│  │  │  └ ms 1795645077806 ─────┘ │  └ "did:plc:abc" ──────────────┘
//	│  │  └ flags                       └ uvarint len 11
//	│  └ kind commit
//	└ version
//
// and, if it was the first event committed in second 1795645077, the time
// index holds 08 00 00 00 00 6b 07 5e 95 → 00 00 00 00 00 00 00 05.
//
// # Invariants
//
//   - Seqs are contiguous from Options.InitialSeq and never reused (meta 's'
//     is written in the same batch as the events), and every seq below meta
//     's' and at or above OldestSeq is present in the log. The relay's
//     sequencer assigns them; Staged.Commit refuses rows whose seqs do not
//     continue the log by exactly one (ErrSeqGap), so a sequencer bug
//     cannot leave a hole or reuse a seq. AdvanceSeq and a splitter's
//     AppendAt are the documented exceptions (a forward jump).
//   - An account's rev only increases: Stage drops an event whose rev is not
//     greater than the stored one (equal is allowed for #sync, as a no-op),
//     checking against updates earlier in the same batch too. So for every
//     account, the stored rev, commit and data are those of its last #commit
//     or #sync in the log.
//   - Host cursors, account rows, per-host account counts and meta 's' are
//     written in the same Pebble batch as the events that moved them, so a
//     crash never leaves them disagreeing with the log.
//   - The time index is coarse (at most one entry per second, pointing at the
//     first seq committed in that second) and only advances.
//
// # Writing events
//
// A relay writes each group commit with two calls from its sequencer, and
// the store never calls back into it. Stage decides every event without a
// seq: the conditional rev update, account creation, status changes and
// the host cursor. The sequencer then gives each logged event the next
// seq, builds its frame with that seq, and hands the rows (seq, kind, DID,
// frame) to Staged.Commit, which checks that the seqs continue the log and
// writes the rows, the account, host and uid updates, meta 's' and the
// time index in one Pebble batch with one WAL sync: all of it is durable,
// or none. The frames stay the caller's: Commit copies them into the batch
// and keeps no reference, so the caller may publish or release them as
// soon as Commit returns.
//
// # Durability
//
// SyncEveryBatch (the default) fsyncs the WAL once per batch before
// Staged.Commit returns (group commit). With Options.SyncInterval the
// fsyncs are at least that far apart: a batch that comes sooner is written
// at once and waits, with the batches after it, for the next one; Commit
// still returns only once its batch is durable. NoSync writes the WAL into
// the OS page cache without fsync: a process crash loses nothing, but a
// power loss or kernel crash loses the batches since the OS last flushed
// the file, and those seqs may be reassigned to different events after
// the restart.
//
// # Concurrency
//
// Every method is safe for concurrent use. Mutations (Stage to Commit,
// AppendAt, the account, host and ban setters) serialize on one writer
// lock, held from Stage until Commit returns; the relay stages and commits
// from its single sequencer goroutine. Reads (GetAccount, ListAccounts,
// GetHost, ListHosts, NewIterator, OldestSeq, NewestSeq, SeqAtTime, Stats)
// never wait for a write to commit. A background goroutine enforces the
// replay window and disk budget with range deletions and compactions,
// which do not take the writer lock.
package store
