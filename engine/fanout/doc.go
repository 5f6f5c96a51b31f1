// Package fanout is the server side of one consumer of a fan-out stream
// over WebSocket: the single write path that the firehose (engine/firehose)
// and the Jetstream stream (engine/jetstream) both use for their consumers.
//
// # What a Conn does
//
// A fan-out stream shares its messages: one reference-counted pool frame
// holds a message's bytes for every consumer it goes to. A Conn writes a
// batch of such frames with one writev straight from the shared buffers,
// each behind its own WebSocket header (engine/wsframe), and releases them;
// it writes a replaying consumer's messages through a pooled buffer
// instead, since a log's bytes are only valid during its callback; it
// pings a consumer it has sent nothing for a ping interval, answers the
// client's pings at the next message boundary, and ends with an optional
// error message and a close frame. Every write runs under
// Endpoint.WriteTimeout, and Stop aborts a blocked write at once, so a slow
// or dead consumer never holds up the goroutine that stops it.
//
// What differs between the streams stays with them: where the frames come
// from (the firehose's ring, a Jetstream subscriber's queue) and so the
// slow-consumer rule, the opcode, what is counted, and the closed set of
// reasons a connection ends (the type parameter R, whose zero value must
// mean "none").
//
// # Goroutines and ownership
//
// A Conn serves two goroutines. The writer calls every method that writes
// or touches the batch: Batch, WriteBatch, WriteMessage, BeginReplay,
// Buffer, EndReplay, Pong, Wait, Goodbye and Close. The reader runs
// ReadClient. Stop, Wake, Reason, Failed and Context are safe from any
// goroutine.
//
// The slots of Batch belong to the writer goroutine. Whoever fills
// Batch()[:n] (the writer itself, possibly inside its stream's lock) hands
// the Conn one reference on each frame; WriteBatch releases every one of
// them and clears the slots, whether or not the write succeeded, so a
// frame is never released twice and never outlives its write.
//
// # Memory
//
// A Conn holds its batch arrays (BatchFrames frame pointers, headers and
// iovec entries) and two 125-byte control payloads; the replay buffer
// (ReplayBufferBytes) is taken from the endpoint's pool for one replay
// pass and given back after it, so only consumers that are replaying hold
// one. Nothing is allocated per message.
package fanout
