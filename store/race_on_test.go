//go:build race

package store

// raceEnabled: the race detector (and Pebble's invariant checks, which it
// turns on) allocate, so allocation assertions are skipped.
const raceEnabled = true
