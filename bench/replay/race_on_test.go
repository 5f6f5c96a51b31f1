//go:build race

package replay

// raceEnabled: the race detector allocates, so allocation counts are skipped.
const raceEnabled = true
