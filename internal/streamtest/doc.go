// Package streamtest holds what the tests of the relay's output streams
// (engine/firehose, engine/jetstream, engine/fanout) share: an in-memory
// event log, a WebSocket client's dial, and the build flags under which
// allocation assertions do not hold.
//
// It is test code: only _test.go files import it, so no product binary
// links it (go list -deps ./cmd/relay does not list it).
package streamtest
