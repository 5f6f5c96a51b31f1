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
//	  memory            the first buffer is reserved in the share
//	                    (MemoryBytes) before the request is sent
//	  getRepo           https://PDS (http:// only for localhost:PORT and
//	                    loopback hosts when AllowInsecureHosts), identity
//	                    encoding only, body read into a buffer that grows
//	                    as bytes arrive, each step reserved in the share
//	                    first, at most MaxRepoBytes, at least
//	                    MinReadBytesPerSecond, within FetchTimeout
//	  retry             transport errors, timeouts, slow bodies, a share
//	                    lost to concurrent resyncs, 429 and 5xx, with
//	                    exponential backoff and jitter, Retries times
//	  verify            the verifier's scratch is reserved too, then the
//	                    whole repository is checked against the fresh key
//	  OnResult          the outcome and, when ok, the verified state
//	  release           the buffer goes back to the pool, the reservation
//	                    to the share
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
// # Ownership
//
// A Resyncer is safe for concurrent use. Each worker owns one
// verify.RepoVerifier and holds at most one repository buffer at a time.
// The byte views in a Result (the state's rev, CIDs and commit block)
// point into that buffer and are valid only while OnResult runs: copy
// what must outlive the call. OnResult runs on the worker goroutines,
// concurrently for different DIDs, never concurrently for one DID.
//
// # Memory
//
// Every PDS is hostile: it chooses the size, the pace and the encoding of
// what getRepo sends, and anyone can make the relay fetch from it by
// breaking their own account's chain. So:
//
//   - no transparent decompression: requests say Accept-Encoding:
//     identity (so no http.Transport adds gzip), the default client has
//     DisableCompression, and a body with any other Content-Encoding is a
//     fetch error (ErrContentEncoding) — 200 KiB of gzip can inflate to
//     200 MiB;
//   - no allocation from Content-Length: a declared length above
//     MaxRepoBytes or the share fails at once, and otherwise only stops a
//     growth step from overshooting; the buffer starts at 64 KiB and grows
//     only when full, by doubling (rounded up to the pool's size classes
//     up to 8 MiB);
//   - a memory share, MemoryBytes (memory.Shares.Resync), that all
//     resyncs together never exceed. A fetch reserves its first buffer
//     before sending the request and each larger buffer before allocating
//     it (the old and the new together while the bytes are copied); after
//     the body, the verifier's scratch is reserved from the CAR's block
//     count (scratchPerBlock each: block table and hash index). All of it
//     is held until OnResult returns. Reservations wait in FIFO order;
//     when every resync holding bytes is waiting for more, the newest
//     gives its part back and is retried (ErrMemoryBusy,
//     relay_resync_memory_busy_total). A repository that alone needs more
//     than the share ends as too_large (ErrRepoMemory): the largest
//     repository that can be resynced is about half of MemoryBytes;
//   - a body must keep coming: MinReadBytesPerSecond over every
//     MinRateWindow (ErrSlowBody), within FetchTimeout in all.
//
// Not counted in the share, each bounded otherwise: the verifier scratch
// a worker keeps between resyncs (at most retainScratchBytes; after a
// larger repository the worker starts a fresh verifier), small buffers
// parked in the pool, error bodies (4 KiB), response headers (64 KiB with
// the default client), and what the HTTP transport buffers ahead of the
// reader (up to one HTTP/2 stream window, 4 MiB, per fetch).
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
//	relay_resync_memory_reserved_bytes      bytes reserved in the share now
//	relay_resync_memory_limit_bytes         MemoryBytes
//	relay_resync_memory_busy_total          fetches that gave their share back to break a wait
package resync
