// Package relay is the engine core: it wires the upstream epoll loop, the
// keyed validation workers, the single sequencer, the store and the
// firehose hub into a relay (engine design, spec digest §8.3, §9.3, §12–§15).
//
// # Stages
//
// Relay is the composition: New builds one value per stage, hands each the
// few others it calls, and the public methods delegate (api.go).
//
//   - hostTable (hosts.go, hosttop.go, faults.go): the subscribed hosts,
//     requestCrawl admission (crawlGate), bans, limits, panic quarantine,
//     cursor resets and the per-host series.
//   - ingest (ingest.go): the upstream loop's Sink, Cursor and OnConnect,
//     rate limits and the resumer.
//   - accountWorkers (worker.go, park.go, accounts.go): the keyed workers'
//     handler: decode, account state, verify, canonical output, identity
//     parking, and the account actions that run on a DID's worker.
//   - sequencer (sequencer.go, held.go): group commit, host cursors,
//     publish, durable marks.
//   - accountActions (accounts.go, resync.go): operator actions, resync
//     heads and start-up recovery, queued as control tasks on the workers.
//   - resyncs (resync.go): desynchronized accounts and their retries.
//
// # Data flow
//
//	upstream.Loop reader ─▶ ingest.sink: event.Peek (kind, seq, DID; no allocation)
//	   │ out-of-order seq: dropped; seq registered in the host's tracker
//	   │ pool full: hostState.pending ─▶ ingest.resumer (host paused)
//	   ▼
//	pool.Workers keyed by DID (bytes-bounded) ─▶ accountWorkers.handle
//	   │ decode, account state (overlay ▸ store), verify, canonical frame;
//	   │ identity unresolved: parked on the worker (park.go)
//	   ▼
//	sequencer.results ─▶ sequencer.run (one goroutine): store.Stage (account
//	   rows, host cursors) ▸ seqs and frames ▸ Staged.Commit (one group
//	   commit) ▸ Hub.Publish ▸ durable marks
//
//	admin API ─▶ Relay ─▶ hostTable (hosts) | accountActions ─▶ control task ─▶ worker
//	resyncer ─▶ Relay.OnResyncResult ─▶ accountActions (head) | resyncs (retry)
//
// # Ownership
//
// Goroutines, who starts and who stops them:
//
//   - upstream loop readers: started by upstream.New in New, stopped by
//     Close (Loop.Close) before anything downstream. They run ingest.sink,
//     cursorFor and onConnect, one call per host at a time.
//   - pool workers: started by pool.NewWorkers in New; Close flushes their
//     parked tasks (ctlFlushParked) and then closes the pool.
//   - sequencer: started by New (go seq.run); ends when Close closes
//     sequencer.results after the workers stopped, then closes
//     sequencer.done.
//   - resumer and host metrics: started by New (Relay.wg); the resumer
//     ends when Close closes ingest.resume, host metrics with bgCtx.
//   - start-up recovery (accountActions.recoverAccounts): started by
//     Start (Relay.wg), ends with bgCtx.
//   - awaitIdentity, one per parked DID: started by the DID's worker
//     (park), counted in accountWorkers.parkWG; Close waits for them last,
//     once the sequencer stopped and ctx was canceled.
//   - timers: a rate-limited host's resume (dispatch, time.AfterFunc) and
//     resync retries (resyncs.schedule; Close stops them first).
//   - fail's goroutine closes the hub, then Done; Close waits for it.
//
// An upstream frame buffer has exactly one owner at a time:
//
//	loop reader (fills it) ─▶ ingest.sink (sinkGuard.owned)
//	   ─▶ task: in the pool's queue, or hostState.pending until the resumer
//	      submits it, or dropped (released, seq completed: completeDropped)
//	   ─▶ worker (handle): processed, or parked in scratch.parked and run
//	      again by the same worker ─▶ released by handle after processing
//
// The output frame is a separate buffer (pool.Buffers) the worker takes
// for the result: result.out travels worker ─▶ sequencer.results ─▶
// sequencer (held per host in heldList while an earlier seq of the host is
// unfinished, unless it passes a parked one: OrderAccount) ─▶ rewritten
// with its seq into a pool.Frame, whose bytes the store copies in
// Staged.Commit and whose reference Hub.Publish takes (consumers and the
// ring release it) ─▶ result.out back to the pool in
// publish, or in abandon when the batch is not written. Its bytes are
// taken from sequencer.budget by the worker's send and returned by the
// sequencer after the batch (or as soon as it holds the result).
//
// Other state:
//
//   - A result belongs to whoever holds it: the worker until send, then
//     the sequencer goroutine.
//   - A worker's overlay (overlay.go), its entries (acctState) and its
//     parked tasks belong to the worker goroutine whose key the DID hashes
//     to (scratch). An entry is two heap objects, the struct and one
//     buffer holding the DID and the repo state, and its did() views that
//     buffer (never rewritten, so the view stays valid). The overlay is
//     bounded by an estimate of its bytes (Config.OverlayBytes split
//     between the workers); an entry is evicted only at or below
//     sequencer.durable[worker], which the sequencer writes and that
//     worker reads. accountWorkers.overlayBytes[worker] is written by the
//     worker and read on scrape (relay_overlay_bytes). awaitIdentity only
//     names a parking (parkedAcct) in its ctlUnpark answer; it never
//     touches it.
//   - hostState: id, name, insecure are static; up is set once before the
//     first frame. fresh and dialCursor belong to the host's loop callbacks
//     (one at a time). mu guards rate and pending (Sink, resumer,
//     setLimits). The tracker and the quarantine have their own locks;
//     framesIn, bytesIn, heldBack, trusted, accountLimit and accounts are
//     atomic (heldBack: written by the sequencer, read by the Sink;
//     accounts: counted by workers).
//   - hostTable.mu guards the host maps; hostTable.top belongs to the
//     host-metrics goroutine; crawlGate and resyncs have their own locks.
//
// # Invariants
//
//   - Nothing reaches a consumer before Staged.Commit returned: the hub is
//     fed after the batch commit.
//   - Per-account order: one DID always lands on one worker; the store's
//     conditional rev update is the second line of defence. With
//     OrderAccount (the default) a host's #commit (or dropped frame) may
//     be published ahead of an earlier frame of another account that is
//     parked for its identity (the tracker marks it; the worker wakes the
//     sequencer), never ahead of a result of its own account still held;
//     the host's cursor stays below the parked frame, and after a crash
//     the commit comes back from the host as a stale duplicate, dropped.
//     A frame whose identity is still resolving is parked on its worker
//     with its account's later frames behind it, while the worker serves
//     other accounts (park.go). So is one whose PLC resolution failed for a
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
// worker never waits for room that only a frame behind it can make.
// Parked frames are bounded by ParkedBytes (part of the intake) and
// ParkedAccounts; beyond them a worker waits for resolutions.
// Limits delay, they never drop.
package relay
