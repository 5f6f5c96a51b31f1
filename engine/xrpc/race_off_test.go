//go:build !race

package xrpc

// raceEnabled: see race_on_test.go.
const raceEnabled = false
