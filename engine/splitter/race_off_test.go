//go:build !race

package splitter

// raceEnabled: see race_on_test.go.
const raceEnabled = false
