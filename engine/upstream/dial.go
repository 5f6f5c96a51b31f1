package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/atrelay/relay/engine/atproto/syntax"
)

// subscribePath is the firehose endpoint (spec §9.1).
const subscribePath = "/xrpc/com.atproto.sync.subscribeRepos"

// normalizeHost applies syntax.NormalizeHost, the relay's one hostname
// rule, so the dial URL is built from a checked name, and maps a refusal
// onto this package's errors: a development host (a port, localhost,
// loopback) without AllowInsecureHosts is ErrInsecureNotAllowed, anything
// else ErrInvalidHostname; both wrap the syntax reason. Bans and the
// address a name resolves to are checked elsewhere (engine, netguard).
func normalizeHost(s string, allowInsecure bool) (string, error) {
	name, err := syntax.NormalizeHost(s, allowInsecure)
	switch {
	case errors.Is(err, syntax.ErrHostDevOnly):
		return "", fmt.Errorf("%w: %w", ErrInsecureNotAllowed, err)
	case err != nil:
		return "", fmt.Errorf("%w: %w", ErrInvalidHostname, err)
	}
	return name, nil
}

// DevDialAddr is where the development switch connects for addr
// (host:port): a host under ".localhost" goes to 127.0.0.1 on the same
// port, anything else is returned unchanged. RFC 6761 reserves the whole
// .localhost domain for loopback, but Go's resolver asks DNS for
// "pds-1.localhost", so without this a test fleet of TLS hosts named
// pds-N.localhost:PORT (one certificate for *.localhost, one SNI name per
// host) could not be reached. Only development dials use it: without the
// switch such a name is resolved by DNS and its loopback address refused.
// HTTP clients that fetch from the same hosts (describeServer, getRepo)
// should map their dials through it too.
func DevDialAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || len(host) <= len(".localhost") || !strings.EqualFold(host[len(host)-len(".localhost"):], ".localhost") {
		return addr
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// nonPublic lists IPv4 ranges netip has no predicate for (RFC 6890).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// publicAddr reports whether ip may be dialed without the development flag.
func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
		ip.IsMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// controlPublicOnly is the net.Dialer Control hook: it runs on the address
// actually being connected (after DNS), so a name resolving to 127.0.0.1 or
// 169.254.169.254 is refused before any packet leaves.
func controlPublicOnly(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrForbiddenAddress, address)
	}
	if !publicAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap.Addr())
	}
	return nil
}

// backoff is the delay before attempt number failures+1.
func (l *Loop) backoff(failures int) time.Duration {
	cfg := &l.cfg
	if failures >= cfg.SlowAfterFailures {
		third := cfg.SlowRetry / 3
		return cfg.SlowRetry - third + rand.N(2*third+1)
	}
	d := cfg.BackoffMax
	if failures > 0 && failures < 32 {
		d = min(cfg.BackoffMin<<(failures-1), cfg.BackoffMax)
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// scheduleLocked puts a host without a connection back in line after a
// failure. A relay loop goes straight to the slow schedule: retrying a relay
// quickly never helps, but the engine decides whether to Remove it.
// REQUIRES h.mu.
func (l *Loop) scheduleLocked(h *Host, reason Reason) {
	if reason == ReasonRelayLoop {
		h.failures = max(h.failures, l.cfg.SlowAfterFailures)
	}
	h.retryAt = time.Now().Add(l.backoff(h.failures))
	h.state = stateWaiting
}

// dialLoop is one dialer goroutine; MaxConcurrentDials of them are the
// dial semaphore.
func (l *Loop) dialLoop() {
	defer l.wg.Done()
	for {
		h, ok := l.dialQ.pop()
		if !ok {
			return
		}
		l.dialHost(h)
	}
}

// dialHost connects a queued host and hands it to a reader.
func (l *Loop) dialHost(h *Host) {
	h.mu.Lock()
	if h.state != stateDialQueued {
		h.mu.Unlock()
		return
	}
	if h.req&reqRemove != 0 || l.closed.Load() {
		h.state = stateClosed
		h.mu.Unlock()
		l.unregister(h)
		return
	}
	h.state = stateDialing
	h.req &^= reqReconnect
	cursor, hasCursor := h.cursor, h.hasCursor
	h.hasCursor = false
	h.mu.Unlock()

	if !hasCursor && l.cfg.Cursor != nil {
		cursor, hasCursor = l.cfg.Cursor(h)
	}
	if cursor < 0 {
		hasCursor = false
	}
	l.m.dials.Inc()
	c, reason, err := l.dial(h, cursor, hasCursor)
	if err != nil {
		l.count(h, reason, err)
		h.mu.Lock()
		switch {
		case h.req&reqRemove != 0 || l.closed.Load():
			h.state = stateClosed
			h.mu.Unlock()
			l.unregister(h)
			return
		case h.req&reqReconnect != 0:
			h.req &^= reqReconnect
			h.state = stateDialQueued
			l.dialQ.push(h)
		default:
			h.failures++
			l.scheduleLocked(h, reason)
		}
		h.mu.Unlock()
		return
	}

	l.mu.Lock()
	l.conns[c.id] = h
	l.mu.Unlock()
	l.connected.Add(1)
	h.mu.Lock()
	h.conn, h.state, h.pingSent = c, stateReading, 0
	c.prevFailures = h.failures
	h.lastActivity.Store(time.Now().UnixNano())
	h.msgStart.Store(0)
	err = l.ep.add(c.nb.fd, c.id)
	h.mu.Unlock()
	if err != nil {
		l.drop(h, c, ReasonDial, err)
		return
	}
	if l.cfg.OnConnect != nil {
		l.cfg.OnConnect(h)
	}
	// The first turn runs before arming: bytes that arrived with the upgrade
	// response, or TLS records already decrypted, produce no readiness.
	l.runQ.push(h)
}

// dial opens, secures and upgrades one connection. The Reason tells which
// step failed.
func (l *Loop) dial(h *Host, cursor int64, hasCursor bool) (*conn, Reason, error) {
	cfg := &l.cfg
	scheme, port := "wss", "443"
	if h.insecure {
		scheme, port = "ws", "80"
	}
	addr := h.name
	if strings.LastIndexByte(addr, ':') < 0 {
		addr = net.JoinHostPort(addr, port)
	}
	d := net.Dialer{Timeout: cfg.DialTimeout}
	if cfg.AllowInsecureHosts {
		addr = DevDialAddr(addr)
	} else {
		d.Control = controlPublicOnly
	}
	nc, err := d.DialContext(l.ctx, "tcp", addr)
	if err != nil {
		return nil, ReasonDial, err
	}
	nb, err := newNBConn(nc)
	if err != nil {
		nc.Close()
		return nil, ReasonDial, err
	}
	var rw net.Conn = nb
	// Close must not wait out a stalled handshake: cancelling the loop's
	// context expires the deadline at once.
	stop := context.AfterFunc(l.ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := nc.SetDeadline(time.Now().Add(cfg.HandshakeTimeout)); err != nil {
		nc.Close()
		return nil, ReasonDial, err
	}
	if !h.insecure {
		// recordConn: crypto/tls's record buffer stays one record large.
		tc := tls.Client(&recordConn{nbConn: nb}, l.tlsConfig(h))
		nb.flightLimit, nb.flightLeft = true, maxTLSHandshakeBytes
		err := tc.HandshakeContext(l.ctx)
		nb.flightLimit = false
		if err != nil {
			nc.Close()
			if errors.Is(err, ErrTLSHandshakeTooLarge) {
				return nil, ReasonHandshakeTooLarge, ErrTLSHandshakeTooLarge
			}
			return nil, ReasonTLS, err
		}
		rw = tc
	}
	u := url.URL{Scheme: scheme, Host: h.name, Path: subscribePath}
	if hasCursor {
		u.RawQuery = "cursor=" + strconv.FormatInt(cursor, 10)
	}
	wd := ws.Dialer{
		Header:         l.upgradeHdr,
		ReadBufferSize: handshakeReadBufferBytes,
		OnHeader: func(key, value []byte) error {
			if bytes.EqualFold(key, []byte("Server")) && bytes.Contains(bytes.ToLower(value), []byte("atproto-relay")) {
				return ErrRelayLoop
			}
			return nil
		},
	}
	head := &headLimiter{rw: rw, maxBytes: cfg.MaxHandshakeBytes, maxLines: cfg.MaxHandshakeHeaders + 1}
	br, _, err := wd.Upgrade(head, &u)
	if err != nil {
		rw.Close()
		var st ws.StatusError
		switch {
		case errors.Is(err, ErrHandshakeTooLarge):
			return nil, ReasonHandshakeTooLarge, ErrHandshakeTooLarge
		case errors.Is(err, ErrRelayLoop):
			return nil, ReasonRelayLoop, ErrRelayLoop
		case errors.As(err, &st):
			return nil, ReasonHandshake, &StatusError{Status: int(st)}
		}
		return nil, ReasonHandshake, err
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		rw.Close()
		return nil, ReasonHandshake, err
	}
	c := &conn{id: l.nextConnID.Add(1), nb: nb, rw: rw, isTLS: !h.insecure}
	c.fr = frameReader{bufs: &l.bufs, max: cfg.MaxFrameBytes, mem: l.mem, host: h}
	if br != nil {
		// Frames that arrived with the 101 response were buffered by the
		// upgrade; they are parsed before the socket is read.
		peek, _ := br.Peek(br.Buffered())
		l.keepPending(c, peek)
		ws.PutReader(br)
	}
	nb.nonblock = true
	return c, 0, nil
}

// tlsConfig returns the TLS settings for h's handshake.
func (l *Loop) tlsConfig(h *Host) *tls.Config {
	var cfg *tls.Config
	if l.cfg.TLSConfig != nil {
		cfg = l.cfg.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" {
		host := h.name
		if i := strings.LastIndexByte(host, ':'); i >= 0 {
			host = host[:i]
		}
		cfg.ServerName = host
	}
	return cfg
}
