//go:build race

package relay

// raceEnabled scales the end-to-end tests down under the race detector,
// which slows signing and validation several times.
const raceEnabled = true
