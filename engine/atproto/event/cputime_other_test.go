//go:build !linux

package event_test

import "testing"

// reportCPU runs body b.N times; thread CPU time is only measured on Linux.
func reportCPU(b *testing.B, body func()) {
	for b.Loop() {
		body()
	}
}
