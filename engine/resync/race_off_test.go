//go:build !race

package resync

// raceEnabled: see race_on_test.go.
const raceEnabled = false
