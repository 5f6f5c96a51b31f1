package firehose

import (
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/internal/config"
)

// Config holds the hub's knobs. Zero values mean the documented default;
// negative values are rejected by NewHub.
type Config struct {
	// RingBytes bounds the payload bytes held by the ring of recent frames
	// (default 128 MiB). The newest frame is always kept, even alone above
	// the bound, so live consumers never miss it.
	RingBytes int
	// RingFrames bounds the number of frames in the ring (default 131072,
	// rounded up to a power of two); the slot array is allocated up front.
	RingFrames int
	// BatchFrames is the most frames a consumer takes from the ring and
	// writes with one writev (default 64, at most 512).
	BatchFrames int
	// PingInterval is the ping period for idle consumers (default 30 s,
	// spec §9.1): a consumer that was sent nothing during a whole interval
	// is pinged at the end of the next tick, so after one to two intervals
	// of silence.
	PingInterval time.Duration
	// WriteTimeout is how long one socket write may block before the
	// consumer is treated as dead and disconnected (default 60 s). It is
	// not the slow-consumer rule: a consumer that reads slowly keeps its
	// place and falls back to the Log.
	WriteTimeout time.Duration
	// ReplayBufferBytes is the size of each consumer's write buffer for
	// frames replayed from the Log (default 64 KiB); replayed frames are
	// only valid during the Log callback, so they are copied into it.
	ReplayBufferBytes int
	// SocketSendBufferBytes, when positive, sets SO_SNDBUF on each consumer
	// socket, bounding kernel memory per consumer (default: the OS's).
	SocketSendBufferBytes int
	// MaxConsumers bounds concurrent subscribeRepos connections (those
	// upgrading included); one more is answered HTTP 503 before the
	// WebSocket upgrade (relay_firehose_refused_total{reason="global"}).
	// Default 10,000. A connected consumer costs about 14 KiB of Go memory
	// (see the package doc), plus ReplayBufferBytes while it replays from
	// the Log, plus its kernel socket buffers (see SocketSendBufferBytes):
	// 10,000 idle consumers are about 140 MiB, all replaying at once about
	// 800 MiB.
	MaxConsumers int
	// MaxConsumersPerIP bounds concurrent connections from one client (an
	// IPv4 address or an IPv6 /64; see TrustedProxies); one more is
	// answered HTTP 429 before the upgrade
	// (relay_firehose_refused_total{reason="per_ip"}). Default 16.
	MaxConsumersPerIP int
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client for MaxConsumersPerIP (default none: the TCP peer is the
	// client, so behind a proxy every consumer shares the proxy's limit).
	TrustedProxies []netip.Prefix
	// Software names the relay in the HTTP Server header, which reads
	// "<Software> (atproto-relay)" (default "relay").
	Software string
	// Metrics receives the hub's metrics (default: a private Set).
	Metrics *metrics.Set
	// Logger receives connect and disconnect lines (default: discard).
	Logger *slog.Logger
}

// Default values of Config's fields.
const (
	DefaultRingBytes         = 128 << 20
	DefaultRingFrames        = 1 << 17
	DefaultBatchFrames       = 64
	MaxBatchFrames           = 512
	DefaultPingInterval      = 30 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultReplayBufferBytes = 64 << 10
	DefaultMaxConsumers      = 10_000
	DefaultMaxConsumersPerIP = 16
)

// consumerFixedBytes bounds a connected consumer's Go memory besides its
// replay buffer: both goroutine stacks, the batch arrays, the read buffer
// (measured ~14 KiB with 2,000 loopback consumers; see the package doc),
// and a replay's log iterator.
const consumerFixedBytes = 32 << 10

// ConsumerBytes bounds the Go memory one consumer can make the hub hold:
// its fixed cost plus a replay write buffer (ReplayBufferBytes) while it
// replays from the Log. MaxConsumers × ConsumerBytes bounds them all; the
// relay derives MaxConsumers from its memory budget's consumer share that
// way. Kernel socket buffers come on top (see SocketSendBufferBytes).
func (c Config) ConsumerBytes() int64 {
	return consumerFixedBytes + int64(c.withDefaults().ReplayBufferBytes)
}

// ErrConfig is returned (wrapped) by NewHub for an invalid Config.
var ErrConfig = errors.New("firehose: invalid config")

// withDefaults returns c with zero fields replaced by their defaults and
// RingFrames rounded up to a power of two.
func (c Config) withDefaults() Config {
	config.Default(&c.RingBytes, DefaultRingBytes)
	config.Default(&c.RingFrames, DefaultRingFrames)
	config.Default(&c.BatchFrames, DefaultBatchFrames)
	config.Default(&c.PingInterval, DefaultPingInterval)
	config.Default(&c.WriteTimeout, DefaultWriteTimeout)
	config.Default(&c.ReplayBufferBytes, DefaultReplayBufferBytes)
	config.Default(&c.MaxConsumers, DefaultMaxConsumers)
	config.Default(&c.MaxConsumersPerIP, DefaultMaxConsumersPerIP)
	config.Default(&c.Software, "relay")
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RingFrames > 0 && c.RingFrames <= 1<<30 {
		n := 1
		for n < c.RingFrames {
			n <<= 1
		}
		c.RingFrames = n
	}
	return c
}

// validate reports every out-of-range field of a defaulted Config at once.
func (c Config) validate() error {
	var p config.Problems
	config.NotNegative(&p, "RingBytes", c.RingBytes)
	if c.RingFrames < 0 || c.RingFrames > 1<<30 {
		p.Addf("RingFrames %d outside 1..2^30", c.RingFrames)
	}
	if c.BatchFrames < 0 || c.BatchFrames > MaxBatchFrames {
		p.Addf("BatchFrames %d outside 1..%d", c.BatchFrames, MaxBatchFrames)
	}
	config.NotNegative(&p, "PingInterval", c.PingInterval)
	config.NotNegative(&p, "WriteTimeout", c.WriteTimeout)
	config.NotNegative(&p, "ReplayBufferBytes", c.ReplayBufferBytes)
	config.NotNegative(&p, "MaxConsumers", c.MaxConsumers)
	config.NotNegative(&p, "MaxConsumersPerIP", c.MaxConsumersPerIP)
	config.NotNegative(&p, "SocketSendBufferBytes", c.SocketSendBufferBytes)
	return p.Err(ErrConfig)
}
