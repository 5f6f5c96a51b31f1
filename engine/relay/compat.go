package relay

import (
	"errors"
	"fmt"
)

// ErrBadLimit is returned by SetNewHostsPerDay for a negative limit.
var ErrBadLimit = errors.New("relay: invalid limit")

// NewHostsPerDay returns the current bound on hosts added by public
// requestCrawl per UTC day (the reference relay's admin
// subs/perDayLimit). Safe for concurrent use.
func (r *Relay) NewHostsPerDay() int {
	return r.hosts.crawls.limit()
}

// SetNewHostsPerDay changes that bound until the next restart (the
// reference relay's subs/setPerDayLimit). Zero admits no new host through
// public requestCrawl; hosts already counted today stay counted. Safe for
// concurrent use.
func (r *Relay) SetNewHostsPerDay(n int) error {
	if n < 0 {
		return fmt.Errorf("%w: new hosts per day %d", ErrBadLimit, n)
	}
	r.hosts.crawls.setLimit(n)
	return nil
}
