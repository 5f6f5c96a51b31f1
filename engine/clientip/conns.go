package clientip

import (
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// ConnLimiter bounds the connections an http.Server holds open and not
// hijacked (requests being read or answered, idle keep-alive connections),
// in total and per client key (Key of the TCP peer). Each costs the server
// a goroutine and its buffers whether or not it ever sends a request, and
// the endpoints' own caps (Admission) only see connections that asked for
// a WebSocket. Install Hook as the server's ConnState: a connection over a
// cap is closed as soon as it is accepted, before anything is read from
// it; a hijacked one (a firehose consumer, a Jetstream subscriber) leaves
// the count, its endpoint counts it from then on.
//
// The limiter sees the TCP peer only: a trusted reverse proxy
// (Policy.TrustedProxies) carries many clients on its connections, so it
// is held to MaxTotal alone, and so is a loopback peer with ExemptLoopback
// (a proxy on the same machine not named trusted, local tools). Safe for
// concurrent use; the fields are static after the server starts.
type ConnLimiter struct {
	MaxTotal, MaxPerIP int
	Policy             Policy
	ExemptLoopback     bool
	adm                Admission
	refused            []*metrics.Counter // by Refusal

	mu   sync.Mutex
	open map[net.Conn]netip.Addr // guarded by mu: the connections holding a slot, by key
}

// NewConnLimiter returns a limiter of maxTotal connections, maxPerIP per
// client, whose metrics are registered on set: the gauge openName, the
// connections holding a slot, and the counters
// refusedFamily{reason="global"|"per_ip"}.
func NewConnLimiter(set *metrics.Set, openName, refusedFamily string, maxTotal, maxPerIP int, p Policy) *ConnLimiter {
	l := &ConnLimiter{MaxTotal: maxTotal, MaxPerIP: maxPerIP, Policy: p, open: make(map[net.Conn]netip.Addr)}
	l.refused = RefusalCounters(set, refusedFamily, RefuseGlobal)
	set.NewGauge(openName, func() float64 { return float64(l.adm.Held()) })
	return l
}

// Hook is the http.Server ConnState callback that applies the limits.
func (l *ConnLimiter) Hook(c net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		peer := parse(c.RemoteAddr().String())
		perIP := l.MaxPerIP
		if (l.ExemptLoopback && peer.IsLoopback()) || l.Policy.trusted(peer) {
			perIP = l.MaxTotal
		}
		key := Key(peer)
		if r := l.adm.Acquire(key, l.MaxTotal, perIP); r != RefuseNone {
			l.refused[r].Inc()
			_ = c.Close() // the server's first read fails and it forgets c
			return
		}
		l.mu.Lock()
		l.open[c] = key
		l.mu.Unlock()
	case http.StateHijacked, http.StateClosed:
		l.mu.Lock()
		key, ok := l.open[c]
		delete(l.open, c)
		l.mu.Unlock()
		if ok {
			l.adm.Release(key)
		}
	}
}

// Open returns the connections holding a slot.
func (l *ConnLimiter) Open() int { return l.adm.Held() }
