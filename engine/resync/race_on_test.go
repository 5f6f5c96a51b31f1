//go:build race

package resync

// raceEnabled: under -race sync.Pool drops a share of Puts on purpose (and
// the detector allocates on its own), so allocation assertions are skipped.
const raceEnabled = true
