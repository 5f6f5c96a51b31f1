// Package resync repairs desynchronized accounts: it fetches an account's
// whole repository from its PDS (com.atproto.sync.getRepo), verifies it
// (verify.RepoVerifier: hashes, signed commit, complete MST, every record
// present) and hands the verified head to the engine, which stores it,
// emits a #sync and marks the account active again (spec §13.4, issue 6
// "Resync").
//
// # Flow of one resync
//
//	Enqueue(did, host)  dedup per DID, bounded FIFO (false when full)
//	worker              one of Concurrency goroutines takes the DID
//	  identity          Purge + Lookup: the key and PDS are read fresh, since
//	                    a chain break often follows a rotation or a migration;
//	                    the fetch goes to the document's PDS, not to host
//	  rate limit        token bucket over every fetch attempt, all workers
//	  getRepo           https://PDS (http:// only for localhost:PORT and
//	                    loopback hosts when AllowInsecure), body read into a
//	                    pooled buffer, at most MaxRepoBytes
//	  retry             transport errors, timeouts, 429 and 5xx, with
//	                    exponential backoff and jitter, Retries times
//	  verify            the whole repository against the fresh key
//	  OnResult          the outcome and, when ok, the verified state
//	  release           the buffer goes back to the pool
//
// # Outcomes
//
// Every resync ends in exactly one Outcome, a closed set whose String is
// the metric label: ok, not_found, deactivated, takendown, suspended,
// fetch_error, too_large, verify_error, identity_error. The getRepo error
// names RepoNotFound (and a bare 404), RepoDeactivated, RepoTakendown and
// RepoSuspended map onto not_found, deactivated, takendown and suspended:
// they report the account's state at its PDS and are not retried.
//
// # Ownership and memory
//
// A Resyncer is safe for concurrent use. Each worker owns one
// verify.RepoVerifier and holds at most one repository buffer at a time,
// so memory is bounded by Concurrency × MaxRepoBytes plus the verifier
// scratch. The byte views in a Result (the state's rev, CIDs and commit
// block) point into that buffer and are valid only while OnResult runs:
// copy what must outlive the call. OnResult runs on the worker goroutines,
// concurrently for different DIDs, never concurrently for one DID.
//
// # Shutdown
//
// Close cancels: running fetches stop, waiting DIDs are dropped and no
// further OnResult is made; the engine keeps those accounts desynchronized
// and enqueues them again on restart. Drain refuses new work and waits for
// everything queued to finish (bounded by its context) before closing.
//
// # Metrics
//
//	relay_resyncs_total{outcome}            finished resyncs by outcome (all created at 0)
//	relay_resync_duration_seconds           histogram, dequeue to result, retries included
//	relay_resync_queue_length               DIDs waiting for a worker
//	relay_resync_in_flight                  DIDs being resynced
//	relay_resync_rejected_total             Enqueue refused: queue full or closed
//	relay_resync_coalesced_total            Enqueue of a DID already waiting or running
//	relay_resync_retries_total              fetch attempts after the first
//	relay_resync_fetched_bytes_total        repository bytes read
//	relay_resync_canceled_total             resyncs abandoned by Close
package resync
