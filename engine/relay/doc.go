// Package relay is the engine core: it wires the upstream epoll loop, the
// keyed validation workers, the single sequencer, the store and the
// firehose hub into a relay (engine design, spec digest §8.3, §9.3, §12–§15).
//
// # Data flow
//
//	upstream.Loop reader ─Sink─▶ event.Peek (kind, seq, DID; no allocation)
//	   │ out-of-order seq: dropped; seq registered in the host's tracker
//	   ▼
//	pool.Workers keyed by DID (bytes-bounded; full ⇒ host paused)
//	   │ decode, account state (overlay ▸ store), verify, canonical frame
//	   ▼
//	results channel ─▶ sequencer (one goroutine): store.Stage (account
//	   rows, host cursors) ▸ seqs and frames ▸ Staged.Commit (one group
//	   commit) ▸ Hub.Publish ▸ durable marks
//
// # Invariants
//
//   - Nothing reaches a consumer before Staged.Commit returned: the hub is
//     fed after the batch commit.
//   - Per-account order: one DID always lands on one worker; the store's
//     conditional rev update is the second line of defence. A frame whose
//     identity is still resolving is parked on its worker with its
//     account's later frames behind it, while the worker serves other
//     accounts (park.go). So is one whose PLC resolution failed for a
//     transient reason (rate limit, 5xx, timeout): it is retried with
//     backoff and rejected as identity_unavailable only once
//     IdentityRetryTimeout has passed since it arrived.
//   - A panic while handling a frame is recovered; the frame's host is
//     quarantined with its cursor below the frame (faults.go).
//   - A host's persisted cursor is the low-water mark of its tracker: every
//     upstream seq at or below it was fully processed (accepted and durable,
//     or dropped). Dropped frames complete their seq too. A quarantined
//     host's cursor stays below the frame that panicked.
//   - A worker's overlay holds the latest accepted state of its accounts;
//     an entry is evicted only once the sequencer reported its ticket
//     durable, so a store read never returns a state older than one the
//     worker already accepted.
//   - A store write error stops ingestion for good (Healthy false, Err set,
//     every host paused, the hub's consumers disconnected, Done closed so
//     the process exits and is restarted); it is never swallowed.
//
// # Back-pressure
//
// Upstream frame buffers are bounded by the loop, worker queues by bytes, and
// the results channel by items. A full worker queue parks the host's frame
// with the resumer goroutine and pauses the host; a host over its event rate
// is paused until a token is due; a host whose results the sequencer holds
// behind an earlier, unfinished frame beyond HostHeldBytes (or with any
// held while all hosts' held results pass MaxHeldBytes) is paused until
// they are released. Held results do not count in ResultsQueueBytes: a
// worker never waits for room that only a frame behind it can make. Parked frames are bounded by ParkedBytes (part of the
// intake) and ParkedAccounts; beyond them a worker waits for resolutions.
// Limits delay, they never drop.
package relay
