//go:build race

package splitter

// raceEnabled skips the allocation count under the race detector, whose
// sync.Pool drops a share of what is put back on purpose.
const raceEnabled = true
