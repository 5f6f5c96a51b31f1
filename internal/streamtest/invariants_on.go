//go:build invariants

package streamtest

// Invariants is true with -tags invariants: the pool then never recycles
// frame headers, so allocation assertions are skipped.
const Invariants = true
