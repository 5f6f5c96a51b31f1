// Package config holds the one convention of the relay's Config structs.
// A field left at its zero value means "use the default", so the zero
// Config of every package is valid and a caller sets only what it changes:
// each package's withDefaults applies [Default] field by field. Its
// validation then reports every field still out of range (a negative size,
// say) at once, collected in [Problems], rather than quietly replacing it.
package config

import (
	"errors"
	"fmt"
	"time"
)

// Default stores d in *v when *v is the zero value of its type, and leaves
// a value the caller chose alone.
func Default[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Problems collects what is wrong with a Config, so that validation names
// every bad field in one error. The zero value is ready to use; it is
// meant for one validation on one goroutine.
type Problems struct {
	errs []error
}

// Addf records one problem, formatted as fmt.Errorf does.
func (p *Problems) Addf(format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf(format, args...))
}

// NotNegative records a problem when the field called name holds v < 0.
func NotNegative[T int | int64 | time.Duration](p *Problems, name string, v T) {
	if v < 0 {
		p.Addf("%s = %v must not be negative", name, v)
	}
}

// Err returns nil when no problem was recorded, else one error joining
// them all that wraps kind (the package's ErrConfig); with a nil kind it
// only joins them.
func (p *Problems) Err(kind error) error {
	if len(p.errs) == 0 {
		return nil
	}
	if kind == nil {
		return errors.Join(p.errs...)
	}
	return fmt.Errorf("%w: %w", kind, errors.Join(p.errs...))
}
