//go:build !invariants

package firehose

// invariantsEnabled: with -tags invariants the pool never recycles frame
// headers, so allocation assertions are skipped.
const invariantsEnabled = false
