//go:build !race

package firehose

// raceEnabled: the race detector allocates on its own, so allocation
// assertions are skipped under -race.
const raceEnabled = false
