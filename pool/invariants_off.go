//go:build !invariants

package pool

// invariants is true in builds tagged "invariants", which trade speed and
// allocations for catching use after release (see the package doc).
const invariants = false
