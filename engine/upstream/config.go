package upstream

import (
	"crypto/tls"
	"errors"
	"runtime"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/internal/config"
)

// Defaults. Zero in a Config field always means "use the default", never
// "no limit": the peers are untrusted.
const (
	DefaultMaxFrameBytes       = event.MaxFrameBytes // spec §9.2 REF read limit
	DefaultDialTimeout         = 5 * time.Second
	DefaultHandshakeTimeout    = 10 * time.Second
	DefaultWriteTimeout        = 10 * time.Second
	DefaultMaxConcurrentDials  = 32
	DefaultBackoffMin          = time.Second
	DefaultBackoffMax          = 30 * time.Second
	DefaultSlowAfterFailures   = 15 // spec §14.4: ~15 failed dials → offline
	DefaultSlowRetry           = 15 * time.Minute
	DefaultIdlePing            = 2 * time.Minute
	DefaultPongTimeout         = 30 * time.Second
	DefaultTick                = time.Second
	DefaultReadBufferBytes     = 64 << 10
	DefaultTurnBytes           = 1 << 20
	DefaultUserAgent           = "relay/1 (atproto-relay upstream)"
	DefaultMaxHandshakeBytes   = 16 << 10
	DefaultMaxHandshakeHeaders = 100
	DefaultMessageTimeout      = time.Minute
	DefaultMaxPingsPerSecond   = 10
	DefaultLogInterval         = time.Minute
	DefaultMaxBufferedBytes    = 1 << 30
)

// minPendingBytes is the least default Config.MaxPendingBytes: one whole
// scratch read may always be kept.
const minPendingBytes = 64 << 10

// Sink receives every complete binary message, error frames (op -1)
// included: the loop decodes no CBOR beyond the header's op, and ends the
// stream after an error frame (reason "error_frame"). It runs on a reader
// goroutine and takes ownership of f: it must call f.Release exactly once,
// now or later from any goroutine. Returning false pauses the host: nothing more is read
// from its socket until Loop.Resume(h), so buffered memory stays bounded by
// the frames the engine already holds. The Sink may call Remove, Resume and
// Reconnect.
type Sink func(h *Host, f Frame) (keep bool)

// Config configures a Loop. Fields are read once by New.
type Config struct {
	// Sink receives frames. Required.
	Sink Sink
	// Cursor returns the host's last persisted upstream seq; it is called
	// before every dial (on a dialer goroutine) unless Reconnect supplied one.
	// ok=false dials without a cursor (live only). Nil: never send a cursor.
	Cursor func(h *Host) (seq int64, ok bool)
	// OnConnect, if set, is called on a dialer goroutine after a successful
	// upgrade, before the first frame is read.
	OnConnect func(h *Host)
	// OnDisconnect, if set, is called after a failed dial or when an
	// established connection ends, with the reason counted and the error.
	// It runs on a loop goroutine and must not block.
	OnDisconnect func(h *Host, r Reason, err error)

	// Readers is the number of reader goroutines. Default GOMAXPROCS.
	Readers int
	// MaxConcurrentDials bounds dials in flight (one goroutine each).
	// Env RELAY_UPSTREAM_MAX_DIALS. Default 32.
	MaxConcurrentDials int
	// MaxFrameBytes bounds one WebSocket message (all fragments). Bigger →
	// reason "oversize", connection dropped, reconnect with backoff.
	// Env RELAY_UPSTREAM_MAX_FRAME_BYTES. Default 5,000,000.
	MaxFrameBytes int
	// ReadBufferBytes is each reader goroutine's scratch buffer (not per
	// connection). Default 64 KiB.
	ReadBufferBytes int
	// TurnBytes is how much one reader takes from one host before it yields
	// to others (fairness). Default 1 MiB.
	TurnBytes int
	// MaxHandshakeBytes bounds the upgrade response's status line plus
	// headers; MaxHandshakeHeaders bounds its header lines. Beyond either
	// the dial fails at once with reason "handshake_too_large", so a host
	// streaming one endless header line costs at most this much memory.
	// Defaults 16 KiB and 100.
	MaxHandshakeBytes, MaxHandshakeHeaders int
	// MessageTimeout is how long a message may take from its first byte to
	// its last. A message still incomplete after it drops the connection
	// (reason "message_timeout", backoff as after a failed dial): a host
	// cannot keep a partial message buffer alive by trickling bytes. Time
	// while the Sink has the host paused does not count. The default asks
	// ~85 KB/s of a host sending a 5 MB message. Default 1 min.
	MessageTimeout time.Duration
	// MaxPingsPerSecond is the sustained ping rate a host may send; bursts
	// of twice as many are tolerated. Faster drops the connection (reason
	// "ping_flood", backoff as after a failed dial). Default 10.
	MaxPingsPerSecond int
	// LogInterval is the least time between two log lines carrying one
	// host's remote text (Host.LogAllowed). Default 1 min.
	LogInterval time.Duration
	// MaxBufferedBytes bounds the buffers of messages in flight (from
	// their first byte to their delivery to the Sink) of all hosts
	// together, at their capacity. A host that needs more waits, its
	// socket unread, until bytes are free and granted to it in turn
	// (relay_upstream_starved_total, relay_upstream_starved_hosts). A
	// message growing past its first 64 KiB reserves its whole frame once,
	// and half the bound (or a largest message, if less) is kept from first
	// buffers for them, so messages in flight never wait for each other for
	// good (see memBudget); a message above half the bound exceeds it by
	// the difference. The relay sets it from its memory budget's upstream
	// share. Default 1 GiB.
	MaxBufferedBytes int64
	// MaxPendingBytes bounds the pending buffers of all hosts together, at
	// their capacity: bytes a reader read past the frame at which the Sink
	// paused a host (or the buffer budget starved it), kept until the host
	// is read again. Bytes already read cannot be refused, so this is a
	// soft bound: at or above it, readers read at most 4 KiB at a time, and
	// each new pending buffer is at most that. Pending bytes stay under
	// MaxPendingBytes + Readers × ReadBufferBytes (readers that passed the
	// check together) + hosts × 4 KiB (relay_upstream_pending_bytes). They
	// are not part of MaxBufferedBytes. Default MaxBufferedBytes/4, at
	// least 64 KiB.
	MaxPendingBytes int64

	// DialTimeout bounds the TCP connect. Default 5 s.
	DialTimeout time.Duration
	// HandshakeTimeout bounds TLS plus the HTTP upgrade. Default 10 s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds how long a control frame we owe the peer (pong,
	// ping, close) may wait for room in the socket. Control frames are
	// written without blocking; one the socket cannot take yet is kept and
	// retried at the host's next turn, and if it is still unsent after
	// WriteTimeout the connection is dropped (reason "timeout"). Default 10 s.
	WriteTimeout time.Duration
	// BackoffMin and BackoffMax shape reconnect delays: BackoffMin·2^(n-1)
	// after n consecutive failures, capped at BackoffMax, with jitter in
	// [d/2, d]. Defaults 1 s and 30 s.
	BackoffMin, BackoffMax time.Duration
	// SlowAfterFailures consecutive failures switch a host to SlowRetry
	// (never given up). Default 15.
	SlowAfterFailures int
	// SlowRetry is the retry period of a failing host, jittered to
	// [SlowRetry·2/3, SlowRetry·4/3]. Default 15 min.
	SlowRetry time.Duration
	// IdlePing: a connection that delivered no bytes for this long gets a
	// ping. Env RELAY_UPSTREAM_IDLE_PING. Default 2 min.
	IdlePing time.Duration
	// PongTimeout: after our ping, this much more silence drops the
	// connection (reason "timeout"). Default 30 s.
	PongTimeout time.Duration
	// Tick is the period of the one goroutine that schedules redials and
	// checks liveness. It is the granularity of every timer here. Default 1 s.
	Tick time.Duration

	// AllowInsecureHosts is the development switch: it permits ws://,
	// explicit ports (localhost:PORT), non-public destination addresses,
	// and dials names under .localhost (pds-1.localhost:PORT, wss://) on
	// 127.0.0.1 (DevDialAddr). Env RELAY_UPSTREAM_ALLOW_INSECURE. Default off.
	AllowInsecureHosts bool
	// TLSConfig is cloned for wss:// dials (ServerName set to the host when
	// empty). Nil: system roots, TLS 1.2+. A test CA (bench/testca, for
	// fleets of TLS hosts on loopback) goes in its RootCAs, added to the
	// system pool so real hosts still verify.
	TLSConfig *tls.Config
	// UserAgent is sent on every upgrade request.
	UserAgent string
	// Metrics receives the loop's counters and gauges. Nil: a private set.
	Metrics *metrics.Set
}

// withDefaults returns c with zero fields replaced by defaults.
func (c Config) withDefaults() Config {
	config.Default(&c.Readers, runtime.GOMAXPROCS(0))
	config.Default(&c.MaxConcurrentDials, DefaultMaxConcurrentDials)
	config.Default(&c.MaxFrameBytes, DefaultMaxFrameBytes)
	config.Default(&c.ReadBufferBytes, DefaultReadBufferBytes)
	config.Default(&c.TurnBytes, DefaultTurnBytes)
	config.Default(&c.SlowAfterFailures, DefaultSlowAfterFailures)
	config.Default(&c.MaxHandshakeBytes, DefaultMaxHandshakeBytes)
	config.Default(&c.MaxHandshakeHeaders, DefaultMaxHandshakeHeaders)
	config.Default(&c.MaxPingsPerSecond, DefaultMaxPingsPerSecond)
	config.Default(&c.MaxBufferedBytes, DefaultMaxBufferedBytes)
	config.Default(&c.MaxPendingBytes, max(c.MaxBufferedBytes/4, minPendingBytes))
	config.Default(&c.MessageTimeout, DefaultMessageTimeout)
	config.Default(&c.LogInterval, DefaultLogInterval)
	config.Default(&c.DialTimeout, DefaultDialTimeout)
	config.Default(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	config.Default(&c.WriteTimeout, DefaultWriteTimeout)
	config.Default(&c.BackoffMin, DefaultBackoffMin)
	config.Default(&c.BackoffMax, DefaultBackoffMax)
	config.Default(&c.SlowRetry, DefaultSlowRetry)
	config.Default(&c.IdlePing, DefaultIdlePing)
	config.Default(&c.PongTimeout, DefaultPongTimeout)
	config.Default(&c.Tick, DefaultTick)
	config.Default(&c.UserAgent, DefaultUserAgent)
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
	return c
}

// ErrConfig is returned (wrapped) by New and Validate for an invalid Config.
var ErrConfig = errors.New("upstream: invalid config")

// Validate reports every inconsistency of a defaulted Config at once.
func (c Config) Validate() error {
	var p config.Problems
	if c.Sink == nil {
		p.Addf("Sink is required")
	}
	config.NotNegative(&p, "Readers", c.Readers)
	config.NotNegative(&p, "MaxConcurrentDials", c.MaxConcurrentDials)
	config.NotNegative(&p, "MaxFrameBytes", c.MaxFrameBytes)
	config.NotNegative(&p, "ReadBufferBytes", c.ReadBufferBytes)
	config.NotNegative(&p, "TurnBytes", c.TurnBytes)
	config.NotNegative(&p, "SlowAfterFailures", c.SlowAfterFailures)
	config.NotNegative(&p, "MaxHandshakeBytes", c.MaxHandshakeBytes)
	config.NotNegative(&p, "MaxHandshakeHeaders", c.MaxHandshakeHeaders)
	config.NotNegative(&p, "MaxPingsPerSecond", c.MaxPingsPerSecond)
	config.NotNegative(&p, "DialTimeout", c.DialTimeout)
	config.NotNegative(&p, "HandshakeTimeout", c.HandshakeTimeout)
	config.NotNegative(&p, "WriteTimeout", c.WriteTimeout)
	config.NotNegative(&p, "BackoffMin", c.BackoffMin)
	config.NotNegative(&p, "BackoffMax", c.BackoffMax)
	config.NotNegative(&p, "SlowRetry", c.SlowRetry)
	config.NotNegative(&p, "IdlePing", c.IdlePing)
	config.NotNegative(&p, "PongTimeout", c.PongTimeout)
	config.NotNegative(&p, "Tick", c.Tick)
	config.NotNegative(&p, "MessageTimeout", c.MessageTimeout)
	config.NotNegative(&p, "LogInterval", c.LogInterval)
	config.NotNegative(&p, "MaxBufferedBytes", c.MaxBufferedBytes)
	config.NotNegative(&p, "MaxPendingBytes", c.MaxPendingBytes)
	if c.BackoffMax < c.BackoffMin {
		p.Addf("BackoffMax %v < BackoffMin %v", c.BackoffMax, c.BackoffMin)
	}
	if c.ReadBufferBytes > 0 && c.ReadBufferBytes < 1024 {
		p.Addf("ReadBufferBytes = %d is below 1024", c.ReadBufferBytes)
	}
	if c.MaxHandshakeBytes > 0 && c.MaxHandshakeBytes < 1024 {
		p.Addf("MaxHandshakeBytes = %d is below 1024", c.MaxHandshakeBytes)
	}
	if c.MaxPingsPerSecond > 1_000_000 {
		p.Addf("MaxPingsPerSecond = %d is above 1,000,000", c.MaxPingsPerSecond)
	}
	if c.MaxFrameBytes > 1<<30 {
		p.Addf("MaxFrameBytes = %d is above 1 GiB", c.MaxFrameBytes)
	}
	return p.Err(ErrConfig)
}
