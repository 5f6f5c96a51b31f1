//go:build !race

package streamtest

// Race is true under -race: the race detector allocates on its own, so
// allocation assertions are skipped.
const Race = false
