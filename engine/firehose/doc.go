// Package firehose serves the relay's output event stream,
// com.atproto.sync.subscribeRepos (spec digest §9, §10.5, §15): an in-memory
// ring of the most recent durable frames, shared by reference with every
// consumer, and a replay path from the durable event Log for consumers that
// start from a cursor or fall behind the ring.
//
// # Positions and the hand-over
//
// Everything is ordered by relay seq. The sequencer calls Hub.Publish with
// strictly increasing seqs, only after the event is durable in the Log. The
// ring holds every published frame whose seq is greater than the hub's
// floor: the seq of the last evicted frame, or the Log's newest seq when the
// hub was built. A consumer's position is the seq of the last frame it was
// sent (or its cursor). With position ≥ floor every later frame is in the
// ring or not yet published, so the consumer pulls from the ring; with
// position < floor it replays seq > position from the Log and switches to
// the ring as soon as its position reaches the floor. Both sides skip any
// seq ≤ position, so the hand-over is exact in either direction, even while
// Publish runs concurrently: no gap, no duplicate.
//
// A consumer owns no queue of frames. It pulls up to Config.BatchFrames
// frames from the ring into the batch of its fanout.Conn (taking one
// reference on each), which writes them with a single writev straight from
// the shared buffers and releases them. A
// consumer that cannot keep up falls behind the ring and continues from the
// Log; it is disconnected with ConsumerTooSlow only when the Log no longer
// holds the seq after its position. Per-consumer memory is therefore a
// constant: the batch arrays and one replay write buffer.
//
// # Cursor semantics (§9.3)
//
//   - no cursor: live only, from the newest published seq.
//   - cursor > newest durable seq: error frame FutureCursor, then close.
//   - cursor + 1 < oldest retained seq: #info OutdatedCursor, then the whole
//     Log window from its oldest event. cursor = 0 is the same rule: the
//     #info is sent only when the Log's oldest seq is above 1, that is when
//     the window has been trimmed (seqs start at 1).
//   - otherwise: every event with seq > cursor (strictly greater, REC), then
//     live.
//   - a cursor that is not a non-negative decimal integer: HTTP 400 with an
//     XRPC JSON error InvalidRequest, before the upgrade.
//
// # Waking consumers
//
// A consumer that finds nothing new registers itself on the hub's waiting
// list (under the hub lock) and blocks on its own one-slot channel. Publish
// does a non-blocking send to each waiting consumer and empties the list, so
// a publish costs nothing per consumer that is busy and allocates nothing.
//
// # Admission
//
// Every connection holds a slot from before the upgrade until its writer
// ends: at most Config.MaxConsumers in all (one more gets HTTP 503) and
// Config.MaxConsumersPerIP per client, an IPv4 address or IPv6 /64, named
// by X-Forwarded-For only behind Config.TrustedProxies (one more gets HTTP
// 429). Refusals are counted in relay_firehose_refused_total{reason}.
//
// # Goroutines and memory
//
// Each consumer has two goroutines around its fanout.Conn: the writer
// (serve), started when the upgrade succeeds so that the HTTP handler
// returns and net/http's per-connection buffers are freed, and a small
// reader that discards client frames, hands pings to the writer, and
// notices a close or a disconnect. An idle
// consumer costs about 14 KiB of Go memory (measured with 2,000 loopback
// consumers: both stacks, the batch arrays, a 256-byte read buffer), plus
// its kernel socket buffers. Hub.Close stops and waits for both goroutines.
package firehose
