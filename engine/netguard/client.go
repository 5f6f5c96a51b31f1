package netguard

import (
	"net"
	"net/http"
	"time"
)

// Options configures NewTransport and NewClient. Zero fields take the
// documented default; zero never means "unlimited".
type Options struct {
	// Policy is the destination policy; the zero value is public only.
	Policy Policy
	// DialTimeout bounds one TCP connect (DNS included). Default 5s.
	DialTimeout time.Duration
	// TLSHandshakeTimeout bounds the TLS handshake. Default 5s.
	TLSHandshakeTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the response headers
	// once the request is written. Default 10s.
	ResponseHeaderTimeout time.Duration
	// MaxResponseHeaderBytes bounds the response headers. Default 32 KiB
	// (net/http's own default is 1 MiB).
	MaxResponseHeaderBytes int64
	// MaxConnsPerHost bounds connections to one host, dialing, active
	// and idle together. Default 4.
	MaxConnsPerHost int
	// MaxIdleConns bounds idle keep-alive connections in total (per host:
	// at most MaxConnsPerHost). Default 16.
	MaxIdleConns int
	// IdleConnTimeout closes keep-alive connections idle this long.
	// Default 30s.
	IdleConnTimeout time.Duration
	// Timeout bounds a whole request made through NewClient's client,
	// reading the body included. Default 10s. NewTransport ignores it.
	Timeout time.Duration
	// ProxyFromEnvironment sends requests through the proxy named by
	// HTTPS_PROXY/HTTP_PROXY. Off by default: the Policy then applies to
	// the proxy's address, not the destination's, so the proxy must do
	// its own filtering (and a proxy on a private address also needs
	// Policy.AllowPrivate).
	ProxyFromEnvironment bool
}

func (o Options) withDefaults() Options {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.TLSHandshakeTimeout <= 0 {
		o.TLSHandshakeTimeout = 5 * time.Second
	}
	if o.ResponseHeaderTimeout <= 0 {
		o.ResponseHeaderTimeout = 10 * time.Second
	}
	if o.MaxResponseHeaderBytes <= 0 {
		o.MaxResponseHeaderBytes = 32 << 10
	}
	if o.MaxConnsPerHost <= 0 {
		o.MaxConnsPerHost = 4
	}
	if o.MaxIdleConns <= 0 {
		o.MaxIdleConns = 16
	}
	if o.IdleConnTimeout <= 0 {
		o.IdleConnTimeout = 30 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return o
}

// NewTransport returns an http.Transport whose every connection goes
// through a dialer enforcing o.Policy, with the bounds of o. Responses are
// not transparently decompressed: a small gzip body must not become a
// large one behind the caller's read limit. The caller owns the transport
// (CloseIdleConnections when done).
func NewTransport(o Options) *http.Transport {
	o = o.withDefaults()
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second, Control: o.Policy.Control}
	t := &http.Transport{
		DialContext:            d.DialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    o.TLSHandshakeTimeout,
		ResponseHeaderTimeout:  o.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: o.MaxResponseHeaderBytes,
		MaxConnsPerHost:        o.MaxConnsPerHost,
		MaxIdleConnsPerHost:    o.MaxConnsPerHost,
		MaxIdleConns:           o.MaxIdleConns,
		IdleConnTimeout:        o.IdleConnTimeout,
		DisableCompression:     true,
	}
	if o.ProxyFromEnvironment {
		t.Proxy = http.ProxyFromEnvironment
	}
	return t
}

// NewClient returns a client over NewTransport(o) that bounds each request
// by o.Timeout and does not follow redirects (the 3xx response is returned
// as is): a redirect would let the remote party choose the next URL.
func NewClient(o Options) *http.Client {
	o = o.withDefaults()
	return &http.Client{
		Transport:     NewTransport(o),
		Timeout:       o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
