package identity

import (
	"context"
	"strings"
	"sync"
)

// webDomain is the key did:web requests are limited by: the host without
// its port, cut to its last two labels ("a.b.example.com" → "example.com").
// Each did:web names its own host, so a per-host limit would bound nothing;
// the last two labels stand in for the registrable domain without a public
// suffix list. Under a shared suffix (co.uk, github.io) unrelated sites
// share one limit, which makes them wait for each other but never lets
// anyone exceed it.
func webDomain(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	dot := strings.LastIndexByte(host, '.')
	if dot < 0 {
		return host
	}
	if i := strings.LastIndexByte(host[:dot], '.'); i >= 0 {
		return host[i+1:]
	}
	return host
}

// domainLimiter bounds concurrent holders per key (did:web domain). A key's
// slots exist while someone holds or waits for them, so the map is bounded
// by the resolution goroutines. Safe for concurrent use.
type domainLimiter struct {
	per int // static: slots per key

	mu sync.Mutex
	m  map[string]*domainSlots // guarded by mu
}

// domainSlots is one key's semaphore and the number of goroutines holding
// or waiting for it (refs, guarded by domainLimiter.mu).
type domainSlots struct {
	sem  chan struct{}
	refs int
}

// acquire takes one of key's slots, waiting until one is free or ctx is
// done; it reports whether it got one (then release must follow).
func (l *domainLimiter) acquire(ctx context.Context, key string) bool {
	l.mu.Lock()
	d := l.m[key]
	if d == nil {
		d = &domainSlots{sem: make(chan struct{}, l.per)}
		l.m[key] = d
	}
	d.refs++
	l.mu.Unlock()
	select {
	case d.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		l.unref(key, d)
		return false
	}
}

// release gives back a slot acquire returned.
func (l *domainLimiter) release(key string) {
	l.mu.Lock()
	d := l.m[key]
	l.mu.Unlock()
	<-d.sem
	l.unref(key, d)
}

func (l *domainLimiter) unref(key string, d *domainSlots) {
	l.mu.Lock()
	if d.refs--; d.refs == 0 {
		delete(l.m, key)
	}
	l.mu.Unlock()
}
