// Package splitter is the fan-out tier (`relay splitter`): it follows one
// upstream relay's com.atproto.sync.subscribeRepos (ours or any other
// implementation, ws:// or wss://), keeps the stream in its own Pebble log
// under the upstream's seqs, and serves subscribeRepos from that log through
// the same firehose.Hub as `relay serve`, so a consumer's cursor is valid on
// every splitter of one upstream and splitters can be chained.
//
// # Data path
//
// One reader goroutine owns the upstream connection. It reads whole
// WebSocket messages (each at most Config.MaxFrameBytes, 5,000,000 bytes,
// into pooled buffers), scans each with event.Peek for its kind, seq and
// DID without decoding or allocating, and queues event frames (#commit,
// #sync, #identity, #account) with their seq. One writer goroutine takes
// what is queued, up to the store's MaxBatchEvents at a time, logs it with
// store.AppendAt (one fsync per batch, under the store's sync policy) and
// only then calls Hub.Publish, which passes each frame's buffer to the
// consumers unchanged: no re-sequencing, no re-validation, bytes unchanged.
// The queue between them is bounded (Config.QueueBytes, QueueFrames); when
// it is full the reader stops reading and TCP pushes back on the upstream.
//
// Frames the splitter does not log are counted by reason in
// relay_splitter_frames_dropped_total: malformed headers, unknown or legacy
// types, event frames without a seq, seqs at or below our newest (see
// below) and values the store refuses (a seq above 2^53−1, a DID above
// 2,048 bytes). #info and error frames are per-connection messages, never
// logged.
//
// # Seqs: resume, jumps, resets
//
// The newest stored seq is meta 's' of the store, written in the same
// batch as the events. Every (re)connection asks for cursor = the newest
// seq handed to the writer (after a restart: the newest stored), so the
// upstream sends exactly the events after it: no gap, no duplicate. A
// fresh, empty log connects without a cursor (live), or with cursor 0 when
// Config.Backfill asks for the upstream's whole replay window.
//
// A seq above newest+1 is a forward jump: the upstream skipped seqs, or we
// were away longer than its window (it then sends #info OutdatedCursor,
// counted in relay_splitter_upstream_outdated_cursor_total and logged:
// those events are lost here). Jumps are followed and counted
// (relay_splitter_seq_jumps_total); the hub serves a log with gaps exactly
// like a contiguous one (it only needs increasing seqs: a cursor inside a
// gap replays from the next logged seq). One edge remains: the hub judges
// "fell out of the window" as oldest > position+1, so a consumer whose
// position lies in a gap that retention has just made the window's start
// gets OutdatedCursor (at connect) or ConsumerTooSlow (while replaying)
// although it missed nothing.
//
// A seq at or below our newest means the upstream is behind us: its log
// was reset (seqs restarted), or it is a lagging replica behind a load
// balancer. It shows either as the upstream answering our cursor with the
// error frame FutureCursor, or as event frames with seqs not above our
// newest. The policy is hold, never rewind: the splitter keeps serving its
// log (consumers' cursors stay valid, nothing is served out of order or
// twice), drops those frames (counted), keeps reconnecting from its newest
// seq with backoff, and follows the upstream again from the first frame
// whose seq is above its newest (the reset upstream's events numbered at or
// below our newest are never served here). An episode is counted once in
// relay_splitter_upstream_resets_total{signal}, logged at error level, and
// shown by the gauge relay_splitter_upstream_behind and by /xrpc/_health
// ("upstream":"behind"). Rewinding (wiping the log and following the new
// seqs) would hand every consumer's cursor to different events; rebasing
// (serving upstream seq + offset) would rewrite frame bytes and give each
// splitter of a pool a different offset. A relay whose seqs must restart
// should start above its old newest seq (`relay serve --initial-seq`, the
// reference relay's --initial-seq-number): its splitters then see a plain
// forward jump. The RUNBOOK describes the other way out (a new pool).
//
// # Serving
//
// subscribeRepos is the hub's: cursor replay, OutdatedCursor, FutureCursor,
// lagging consumers fed from disk, ConsumerTooSlow. One addition sits in
// front: a cursor above our newest seq waits up to Config.FutureCursorWait
// (at most Config.MaxCursorWaiters requests at once) for the log to reach
// it, because splitters of one pool follow their upstream a few
// milliseconds apart and a consumer moving between them must not get
// FutureCursor for an event the new one is about to store.
//
// The other com.atproto.sync.* queries (GET, HEAD, OPTIONS) and the
// requestCrawl and notifyOfUpdate procedures are passed to the upstream
// (method names of letters only, so no path trick reaches anything else)
// through a reverse proxy rather than redirected: the upstream may be on a
// private network that consumers cannot reach, and clients of POST
// procedures do not follow redirects. Each request is bounded: at most
// Config.ProxyMaxInFlight at once (then 503), a body of at most
// Config.ProxyMaxBodyBytes (then 413), Config.ProxyTimeout for the whole
// exchange, a 64 KiB response head; the client address goes in
// X-Forwarded-For. /xrpc/_health (and /_health) answers from the splitter's
// own state: 503 once the store failed or the upstream has been
// disconnected for Config.UnhealthyAfter.
//
// # Goroutines and ownership
//
// The reader and the writer (Start … Close); the hub's consumer goroutines
// and HTTP handlers run in the caller's server. The reader owns the
// connection and its parse state; queued frames belong to the queue, then
// to the writer, then to the hub. Status and the metrics read atomics.
//
// # Metrics
//
// relay_splitter_frames_total, _bytes_total, _batches_total,
// _upstream_dials_total, _upstream_disconnects_total{reason},
// _frames_dropped_total{reason}, _seq_jumps_total,
// _upstream_outdated_cursor_total, _upstream_resets_total{signal},
// _cursor_waits_total{result}, _proxy_requests_total{result}, and the
// gauges _upstream_connected, _upstream_behind, _last_seq,
// _upstream_last_seen_seq and _queue_bytes, besides the hub's
// relay_firehose_* and the store's relay_store_* series.
package splitter
