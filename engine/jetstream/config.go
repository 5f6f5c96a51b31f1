package jetstream

import (
	"errors"
	"log/slog"
	"net/netip"
	"time"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/internal/config"
)

// Config holds the endpoint's knobs. Zero values mean the documented
// default; negative values are rejected by New.
type Config struct {
	// MaxSubscribers bounds the connected subscribers, those upgrading
	// included (default 5,000); one more gets HTTP 503
	// (relay_jetstream_rejected_total).
	MaxSubscribers int
	// MaxSubscribersPerIP bounds the subscribers connected from one client,
	// an IPv4 address or an IPv6 /64 (see TrustedProxies); one more gets
	// HTTP 429 (relay_jetstream_subscribers_rejected_total{reason="per_ip"}).
	// Every live subscriber costs the pump a filter test per event, so one
	// client must not take every slot. Default 16, as the firehose's.
	MaxSubscribersPerIP int
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client for MaxSubscribersPerIP (default none: the TCP peer is the
	// client, so behind a proxy every subscriber shares the proxy's limit).
	TrustedProxies []netip.Prefix
	// QueueEvents bounds the messages queued for one live subscriber
	// (default 10,000, Jetstream's outbox size); the queue grows on demand.
	// A subscriber whose queue is full is disconnected as too slow.
	QueueEvents int
	// QueueBytes bounds the bytes queued for one live subscriber (default
	// 8 MiB); a message that does not fit a non-empty queue disconnects the
	// subscriber as too slow. Queued messages are shared with every other
	// subscriber that wants them, so this bounds what one slow subscriber
	// can pin.
	QueueBytes int
	// BacklogBytes bounds the messages the live subscribers pin together
	// (default 64 MiB): a subscriber for which the pump has made more than
	// this many bytes of messages since its oldest message not yet written
	// (every message counts, wanted by it or not) is disconnected as too
	// slow. The queues share their messages, so QueueBytes times
	// the subscribers counts what many slow subscribers pin many times
	// over; every message they pin lies in the newest BacklogBytes made,
	// so this bounds them once.
	BacklogBytes int
	// BatchMessages is the most queued messages one writev sends (default
	// 64, at most 512).
	BatchMessages int
	// MaxReplays bounds the subscribers replaying from the log at once
	// (default 16): a replay decodes and encodes every event for its
	// subscriber alone, so this caps the CPU cursors can take. Others wait
	// their turn.
	MaxReplays int
	// MaxClientMessageBytes bounds one message from a subscriber, such as
	// an options_update (default 1 MiB: 10,000 DIDs fit); a larger message
	// closes the connection. Memory grows only as bytes arrive.
	MaxClientMessageBytes int
	// HelloTimeout bounds how long a requireHello subscriber may wait
	// before its first options_update (default 30 s).
	HelloTimeout time.Duration
	// PingInterval is the ping period for idle subscribers (default 30 s).
	PingInterval time.Duration
	// WriteTimeout is how long one socket write may block before the
	// subscriber is treated as dead (default 30 s).
	WriteTimeout time.Duration
	// PollInterval is how often the pump looks for new events in the log
	// when Notify is not called (default 1 s); Notify wakes it at once.
	PollInterval time.Duration
	// ReplayBufferBytes is the write buffer of a replaying subscriber
	// (default 64 KiB).
	ReplayBufferBytes int
	// CompressConcurrency is how many zstd compressions may run at once,
	// the pump's and the replays' together (default 4); each holds about
	// a megabyte of encoder state.
	CompressConcurrency int
	// Software names the relay in the HTTP Server header (default "relay").
	Software string
	// Now is the clock of the "cursor in the future" rule (default
	// time.Now).
	Now func() time.Time
	// Metrics receives the endpoint's metrics (default: a private Set).
	Metrics *metrics.Set
	// Logger receives connect and disconnect lines (default: discard).
	Logger *slog.Logger

	// passEvents is the replay pass budget (default replayPassEvents);
	// tests lower it to exercise re-seeking.
	passEvents int
}

// Default values of Config's fields.
const (
	DefaultMaxSubscribers        = 5_000
	DefaultMaxSubscribersPerIP   = 16 // firehose.DefaultMaxConsumersPerIP
	DefaultQueueEvents           = 10_000
	DefaultQueueBytes            = 8 << 20
	DefaultBacklogBytes          = 64 << 20
	DefaultBatchMessages         = 64
	MaxBatchMessages             = 512
	DefaultMaxReplays            = 16
	DefaultMaxClientMessageBytes = 1 << 20
	DefaultHelloTimeout          = 30 * time.Second
	DefaultPingInterval          = 30 * time.Second
	DefaultWriteTimeout          = 30 * time.Second
	DefaultPollInterval          = time.Second
	DefaultReplayBufferBytes     = 64 << 10
	DefaultCompressConcurrency   = 4
)

// subscriberFixedBytes bounds a subscriber's Go memory besides its queue,
// its client message and its replay buffer: goroutine stacks, the batch
// arrays, its filter.
const subscriberFixedBytes = 32 << 10

// queueSlotBytes is one slot of a subscriber's queue ring (a message
// reference and its mark), which grows up to QueueEvents slots.
const queueSlotBytes = int64(unsafe.Sizeof(queued{}))

// compressorBytes is the state of one zstd compression (see
// CompressConcurrency).
const compressorBytes = 1 << 20

// SubscriberBytes bounds the Go memory one subscriber can make the server
// hold besides the messages it shares (SharedBytes): its queue's slots
// (QueueEvents), a client message being assembled
// (MaxClientMessageBytes), a replay write buffer (ReplayBufferBytes) and
// its fixed cost. The relay derives MaxSubscribers from its memory
// budget's Jetstream share: MaxSubscribers × SubscriberBytes +
// SharedBytes bounds them all.
func (c Config) SubscriberBytes() int64 {
	c = c.withDefaults()
	return int64(c.QueueEvents)*queueSlotBytes + int64(c.MaxClientMessageBytes) + int64(c.ReplayBufferBytes) +
		subscriberFixedBytes
}

// SharedBytes bounds what the server holds whatever the number of
// subscribers: the messages the live subscribers pin (BacklogBytes) and
// the compressors' state (CompressConcurrency × about 1 MiB).
func (c Config) SharedBytes() int64 {
	c = c.withDefaults()
	return int64(c.BacklogBytes) + int64(c.CompressConcurrency)*compressorBytes
}

// ErrConfig is returned (wrapped) by New for an invalid Config.
var ErrConfig = errors.New("jetstream: invalid config")

func (c Config) withDefaults() Config {
	config.Default(&c.MaxSubscribers, DefaultMaxSubscribers)
	config.Default(&c.MaxSubscribersPerIP, DefaultMaxSubscribersPerIP)
	config.Default(&c.QueueEvents, DefaultQueueEvents)
	config.Default(&c.QueueBytes, DefaultQueueBytes)
	config.Default(&c.BacklogBytes, DefaultBacklogBytes)
	config.Default(&c.BatchMessages, DefaultBatchMessages)
	config.Default(&c.MaxReplays, DefaultMaxReplays)
	config.Default(&c.MaxClientMessageBytes, DefaultMaxClientMessageBytes)
	config.Default(&c.ReplayBufferBytes, DefaultReplayBufferBytes)
	config.Default(&c.CompressConcurrency, DefaultCompressConcurrency)
	config.Default(&c.passEvents, replayPassEvents)
	config.Default(&c.HelloTimeout, DefaultHelloTimeout)
	config.Default(&c.PingInterval, DefaultPingInterval)
	config.Default(&c.WriteTimeout, DefaultWriteTimeout)
	config.Default(&c.PollInterval, DefaultPollInterval)
	config.Default(&c.Software, "relay")
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate reports every out-of-range field of a defaulted Config at once.
func (c Config) validate() error {
	var p config.Problems
	config.NotNegative(&p, "MaxSubscribers", c.MaxSubscribers)
	config.NotNegative(&p, "MaxSubscribersPerIP", c.MaxSubscribersPerIP)
	config.NotNegative(&p, "QueueEvents", c.QueueEvents)
	config.NotNegative(&p, "QueueBytes", c.QueueBytes)
	config.NotNegative(&p, "BacklogBytes", c.BacklogBytes)
	config.NotNegative(&p, "MaxReplays", c.MaxReplays)
	config.NotNegative(&p, "MaxClientMessageBytes", c.MaxClientMessageBytes)
	config.NotNegative(&p, "ReplayBufferBytes", c.ReplayBufferBytes)
	config.NotNegative(&p, "CompressConcurrency", c.CompressConcurrency)
	if c.BatchMessages < 0 || c.BatchMessages > MaxBatchMessages {
		p.Addf("BatchMessages %d outside 1..%d", c.BatchMessages, MaxBatchMessages)
	}
	config.NotNegative(&p, "HelloTimeout", c.HelloTimeout)
	config.NotNegative(&p, "PingInterval", c.PingInterval)
	config.NotNegative(&p, "WriteTimeout", c.WriteTimeout)
	config.NotNegative(&p, "PollInterval", c.PollInterval)
	return p.Err(ErrConfig)
}
