// Package defaults holds the relay's one convention for configuration
// structs: a field left at its zero value means "use the default", so the
// zero Config of every package is valid and a caller sets only what it
// changes. Each package's withDefaults applies it field by field; its
// Validate then rejects what is still out of range (a negative size, say),
// rather than quietly replacing it.
package defaults

// Set stores d in *v when *v is the zero value of its type, and leaves a
// value the caller chose alone.
func Set[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}
