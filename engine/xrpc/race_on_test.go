//go:build race

package xrpc

// raceEnabled skips the allocation measurement under the race detector,
// which allocates beside the code measured.
const raceEnabled = true
