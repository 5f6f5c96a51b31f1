//go:build race

package jetstream

// raceEnabled: the race detector allocates on its own, so allocation
// assertions are skipped under -race.
const raceEnabled = true
