// Package testutil holds small helpers that the tests of several packages
// would otherwise each write again. Only tests import it; it imports
// nothing of this module, so any package's tests may use it.
package testutil

import (
	"sync"
	"time"
)

// Clock is a settable clock for code that takes a Now function (store,
// identity and relay configurations): it stands still until Advance.
// Safe for concurrent use.
type Clock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d (backward when d is negative).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
