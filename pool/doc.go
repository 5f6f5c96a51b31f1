// Package pool owns the relay's memory reuse and its fixed worker pools:
//
//   - Buffers: size-classed byte buffers on valyala/bytebufferpool, one pool
//     per class, with per-class metrics (buffers.go).
//   - Frames: reference-counted immutable frames shared by the broadcaster
//     and every consumer, whose buffer goes back to Buffers when the last
//     reader releases it (frame.go).
//   - Workers: N goroutines with keyed dispatch (one key always runs on one
//     worker, in submission order), queues bounded in items and bytes with
//     blocking back-pressure, and per-worker scratch state (workers.go).
//
// Nothing here is global: every pool is a value built by a constructor and
// (for Workers) stopped by Close. Metrics go to a *metrics.Set the caller
// passes in.
//
// # Invariant builds
//
// Built with -tags invariants, Frames stop recycling frame headers (so a
// stale *Frame stays dead instead of being reused), poison released
// buffers with 0xff and panic on Bytes after release. Without the tag the
// always-on checks are the cheap ones: Retain on a released frame and a
// release past zero both panic.
package pool
