package splitter

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/engine/upstream"
	"github.com/atrelay/relay/internal/config"
	"github.com/atrelay/relay/store"
)

// Defaults of Config's fields.
const (
	// The connection to the upstream relay is the same kind of firehose
	// connection engine/upstream makes to a PDS, with the same bounds.
	DefaultMaxFrameBytes       = upstream.DefaultMaxFrameBytes
	DefaultDialTimeout         = upstream.DefaultDialTimeout
	DefaultHandshakeTimeout    = upstream.DefaultHandshakeTimeout
	DefaultMaxHandshakeBytes   = upstream.DefaultMaxHandshakeBytes
	DefaultMaxHandshakeHeaders = upstream.DefaultMaxHandshakeHeaders
	DefaultMessageTimeout      = upstream.DefaultMessageTimeout
	DefaultPongTimeout         = upstream.DefaultPongTimeout
	DefaultWriteTimeout        = upstream.DefaultWriteTimeout
	DefaultBackoffMin          = upstream.DefaultBackoffMin
	DefaultBackoffMax          = upstream.DefaultBackoffMax
	DefaultReadBufferBytes     = upstream.DefaultReadBufferBytes
	DefaultIdlePing            = 30 * time.Second // upstream's is 2 min
	DefaultQueueBytes          = 64 << 20
	DefaultQueueFrames         = 16384
	DefaultUnhealthyAfter      = time.Minute
	DefaultFutureCursorWait    = 5 * time.Second
	DefaultMaxCursorWaiters    = 1024
	DefaultProxyTimeout        = time.Minute
	DefaultProxyMaxInFlight    = 256
	DefaultProxyMaxBodyBytes   = 64 << 10
	DefaultUserAgent           = "relay/1 (atproto-relay splitter)"
)

// Config holds the splitter's settings. Zero values mean the documented
// default; negative values are refused by New. A plain value.
type Config struct {
	// Upstream is the relay to follow (required): a ws://, wss://, http://
	// or https:// URL, or a bare host[:port] meaning wss://. An empty or "/"
	// path means the server root; any other path is a prefix under which
	// /xrpc/... lives (a relay behind a path-routing proxy), and a path
	// ending in /xrpc/com.atproto.sync.subscribeRepos names the endpoint
	// itself. http(s) and ws(s) are interchangeable: the stream uses ws(s),
	// the XRPC pass-through http(s), on the same host.
	Upstream string
	// Backfill makes a splitter whose log is empty start from the
	// upstream's oldest retained event (cursor 0) instead of live. Once the
	// log holds anything, the splitter always resumes after its newest seq.
	Backfill bool

	// MaxFrameBytes bounds one upstream message (default 5,000,000); a
	// bigger one drops the connection (reason "oversize").
	MaxFrameBytes int
	// DialTimeout bounds the TCP connect (default 5 s).
	DialTimeout time.Duration
	// HandshakeTimeout bounds connect, TLS and the WebSocket upgrade
	// together (default 10 s).
	HandshakeTimeout time.Duration
	// MaxHandshakeBytes bounds the upgrade response head (default 16 KiB);
	// MaxHandshakeHeaders its header lines (default 100).
	MaxHandshakeBytes   int
	MaxHandshakeHeaders int
	// MessageTimeout bounds one message from its first byte to its last
	// (default 1 min; reason "timeout").
	MessageTimeout time.Duration
	// IdlePing is how long the upstream may stay silent before it is
	// pinged (default 30 s); PongTimeout how long it then has to send
	// anything before the connection is dropped (default 30 s).
	IdlePing    time.Duration
	PongTimeout time.Duration
	// WriteTimeout bounds each control frame we write (default 10 s).
	WriteTimeout time.Duration
	// BackoffMin and BackoffMax bound the exponential, jittered delay
	// between reconnects (defaults 1 s and 30 s).
	BackoffMin time.Duration
	BackoffMax time.Duration
	// ReadBufferBytes sizes the socket read buffer (default 64 KiB).
	ReadBufferBytes int
	// QueueBytes bounds the frames read from the upstream and not yet
	// stored (buffer capacity, default 64 MiB); QueueFrames their number
	// (default 16384). A full queue stops reading: TCP pushes back.
	QueueBytes  int
	QueueFrames int
	// UnhealthyAfter is how long the upstream may stay disconnected before
	// /xrpc/_health answers 503 (default 1 min).
	UnhealthyAfter time.Duration
	// FutureCursorWait is how long a subscribeRepos request whose cursor is
	// beyond our newest seq waits for the log to reach it before the hub
	// answers FutureCursor (default 5 s): a consumer moving from a
	// splitter that is a few events ahead continues seamlessly.
	// MaxCursorWaiters bounds such waiting requests (default 1024); more
	// are answered at once.
	FutureCursorWait time.Duration
	MaxCursorWaiters int
	// ProxyTimeout bounds one passed-through XRPC request, response body
	// included (default 1 min); ProxyMaxInFlight how many run at once
	// (default 256; more get 503); ProxyMaxBodyBytes the body of a
	// requestCrawl (default 64 KiB; more get 413).
	ProxyTimeout      time.Duration
	ProxyMaxInFlight  int
	ProxyMaxBodyBytes int
	// Software names us in the Server header, "<Software> (atproto-relay)"
	// (default "relay"), as the hub does.
	Software string
	// UserAgent is sent to the upstream (default DefaultUserAgent).
	UserAgent string
	// TLSConfig, when set, is used for wss:// and https:// (tests pass
	// their own roots); default: the system roots, TLS 1.2 or later.
	TLSConfig *tls.Config
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	config.Default(&c.MaxFrameBytes, DefaultMaxFrameBytes)
	config.Default(&c.MaxHandshakeBytes, DefaultMaxHandshakeBytes)
	config.Default(&c.MaxHandshakeHeaders, DefaultMaxHandshakeHeaders)
	config.Default(&c.ReadBufferBytes, DefaultReadBufferBytes)
	config.Default(&c.QueueBytes, DefaultQueueBytes)
	config.Default(&c.QueueFrames, DefaultQueueFrames)
	config.Default(&c.MaxCursorWaiters, DefaultMaxCursorWaiters)
	config.Default(&c.ProxyMaxInFlight, DefaultProxyMaxInFlight)
	config.Default(&c.ProxyMaxBodyBytes, DefaultProxyMaxBodyBytes)
	config.Default(&c.DialTimeout, DefaultDialTimeout)
	config.Default(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	config.Default(&c.MessageTimeout, DefaultMessageTimeout)
	config.Default(&c.IdlePing, DefaultIdlePing)
	config.Default(&c.PongTimeout, DefaultPongTimeout)
	config.Default(&c.WriteTimeout, DefaultWriteTimeout)
	config.Default(&c.BackoffMin, DefaultBackoffMin)
	config.Default(&c.BackoffMax, DefaultBackoffMax)
	config.Default(&c.UnhealthyAfter, DefaultUnhealthyAfter)
	config.Default(&c.FutureCursorWait, DefaultFutureCursorWait)
	config.Default(&c.ProxyTimeout, DefaultProxyTimeout)
	config.Default(&c.Software, "relay")
	config.Default(&c.UserAgent, DefaultUserAgent)
	return c
}

// ErrConfig is returned (wrapped) by New for an invalid Config or Deps.
var ErrConfig = errors.New("splitter: invalid config")

// validate reports every problem of a defaulted Config at once.
func (c Config) validate() error {
	var p config.Problems
	if _, err := parseUpstream(c.Upstream); err != nil {
		p.Addf("%w", err)
	}
	config.NotNegative(&p, "MaxFrameBytes", c.MaxFrameBytes)
	config.NotNegative(&p, "MaxHandshakeBytes", c.MaxHandshakeBytes)
	config.NotNegative(&p, "MaxHandshakeHeaders", c.MaxHandshakeHeaders)
	config.NotNegative(&p, "ReadBufferBytes", c.ReadBufferBytes)
	config.NotNegative(&p, "QueueBytes", c.QueueBytes)
	config.NotNegative(&p, "QueueFrames", c.QueueFrames)
	config.NotNegative(&p, "MaxCursorWaiters", c.MaxCursorWaiters)
	config.NotNegative(&p, "ProxyMaxInFlight", c.ProxyMaxInFlight)
	config.NotNegative(&p, "ProxyMaxBodyBytes", c.ProxyMaxBodyBytes)
	config.NotNegative(&p, "DialTimeout", c.DialTimeout)
	config.NotNegative(&p, "HandshakeTimeout", c.HandshakeTimeout)
	config.NotNegative(&p, "MessageTimeout", c.MessageTimeout)
	config.NotNegative(&p, "IdlePing", c.IdlePing)
	config.NotNegative(&p, "PongTimeout", c.PongTimeout)
	config.NotNegative(&p, "WriteTimeout", c.WriteTimeout)
	config.NotNegative(&p, "BackoffMin", c.BackoffMin)
	config.NotNegative(&p, "BackoffMax", c.BackoffMax)
	config.NotNegative(&p, "UnhealthyAfter", c.UnhealthyAfter)
	config.NotNegative(&p, "FutureCursorWait", c.FutureCursorWait)
	config.NotNegative(&p, "ProxyTimeout", c.ProxyTimeout)
	if c.BackoffMax < c.BackoffMin {
		p.Addf("BackoffMax %v < BackoffMin %v", c.BackoffMax, c.BackoffMin)
	}
	if c.MaxFrameBytes > store.MaxFrameBytes {
		p.Addf("MaxFrameBytes = %d is above the store's frame limit %d", c.MaxFrameBytes, store.MaxFrameBytes)
	}
	if c.ReadBufferBytes < 1024 {
		p.Addf("ReadBufferBytes = %d is below 1024", c.ReadBufferBytes)
	}
	if c.MaxHandshakeBytes < 1024 {
		p.Addf("MaxHandshakeBytes = %d is below 1024", c.MaxHandshakeBytes)
	}
	return p.Err(ErrConfig)
}

// Deps are the splitter's collaborators, owned by the caller: the splitter
// neither opens nor closes them.
type Deps struct {
	// Store is the splitter's own log (required), written with AppendAt.
	Store *store.Store
	// Hub serves subscribeRepos (required); build it on
	// store.FirehoseLog{St: Store} after opening Store, and let the splitter
	// be the only caller of Publish.
	Hub *firehose.Hub
	// OnPublish, when set, is called by the writer goroutine after each
	// durable batch was handed to the hub (the Jetstream stream's wake-up).
	// It must not block.
	OnPublish func()
	// Metrics receives the relay_splitter_* series (default: a private Set).
	Metrics *metrics.Set
	// Logger receives connection, reset and failure lines (default:
	// discard).
	Logger *slog.Logger
}

// subscribePath is the firehose endpoint (spec §9.1).
const subscribePath = "/xrpc/com.atproto.sync.subscribeRepos"

// endpoint is a parsed Config.Upstream; static after New.
type endpoint struct {
	stream *url.URL // ws:// or wss:// …/xrpc/com.atproto.sync.subscribeRepos
	http   *url.URL // http:// or https:// base the XRPC paths are appended to
	host   string   // host[:port], for logs and the admin view
}

// Errors of parseUpstream.
var (
	ErrUpstreamURL    = errors.New("splitter: upstream must be a ws, wss, http or https URL or a host[:port]")
	ErrUpstreamSchema = errors.New("splitter: upstream URL scheme must be ws, wss, http or https")
)

// parseUpstream parses Config.Upstream.
func parseUpstream(s string) (endpoint, error) {
	if s == "" {
		return endpoint{}, fmt.Errorf("%w: Upstream is required", ErrUpstreamURL)
	}
	if !strings.Contains(s, "://") {
		s = "wss://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return endpoint{}, fmt.Errorf("%w: %q", ErrUpstreamURL, s)
	}
	secure := false
	switch strings.ToLower(u.Scheme) {
	case "wss", "https":
		secure = true
	case "ws", "http":
	default:
		return endpoint{}, fmt.Errorf("%w: %q", ErrUpstreamSchema, u.Scheme)
	}
	prefix := strings.TrimSuffix(strings.TrimSuffix(u.Path, subscribePath), "/")
	st := &url.URL{Scheme: "ws", Host: u.Host, Path: prefix + subscribePath}
	hb := &url.URL{Scheme: "http", Host: u.Host, Path: prefix}
	if secure {
		st.Scheme, hb.Scheme = "wss", "https"
	}
	return endpoint{stream: st, http: hb, host: u.Host}, nil
}

// ProxyRequestBytes bounds what one request passed through to the upstream
// holds besides its client's connection while the answer streams: the
// proxy's 32 KiB copy buffer, the upstream connection's buffers and
// goroutines, both exchanges' state (measured 97 KiB with the test
// upstream's own side of each request included, TestProxyRequestBytes).
// A memory budget counts ProxyMaxInFlight of them.
const ProxyRequestBytes = 128 << 10
