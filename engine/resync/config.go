package resync

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/engine/label"
	"github.com/atrelay/relay/engine/verify"
	"github.com/atrelay/relay/pool"
)

// Defaults used where a Config field is zero.
const (
	DefaultConcurrency   = 4
	DefaultRatePerSecond = 10
	DefaultBurst         = 1
	DefaultRetries       = 3
	DefaultRetryBackoff  = time.Second
	DefaultMaxBackoff    = 30 * time.Second
	DefaultQueueSize     = 10_000
	DefaultMaxRepoBytes  = 256 << 20
	DefaultMemoryBytes   = 64 << 20
	DefaultFetchTimeout  = 2 * time.Minute
	DefaultDialTimeout   = 10 * time.Second
	DefaultUserAgent     = "relay-resync"

	DefaultMinReadBytesPerSecond = 16 << 10
	DefaultMinRateWindow         = 10 * time.Second
)

// Config configures a Resyncer. Zero fields take the documented defaults;
// zero never means "unlimited".
type Config struct {
	// Identities resolves the account's key and PDS (required);
	// *identity.Resolver satisfies it.
	Identities verify.Identities
	// OnResult receives every finished resync (required). It runs on a
	// worker goroutine; Result's byte views are valid only during the call.
	OnResult func(did string, r Result)

	// Concurrency is the number of workers, hence of repositories held at
	// once. Default 4.
	Concurrency int
	// RatePerSecond bounds fetch attempts (retries included) over all
	// workers. Default 10.
	RatePerSecond float64
	// Burst is how many fetches may start back to back after an idle
	// period. Default 1.
	Burst int
	// Retries is how many times a retryable failure (transport error,
	// timeout, 429, 5xx, transient identity failure) is retried. Default
	// 3; negative means no retry.
	Retries int
	// RetryBackoff is the wait before the first retry, doubled for each
	// further one (with ±25% jitter) up to MaxBackoff. Defaults 1 s, 30 s.
	RetryBackoff, MaxBackoff time.Duration
	// QueueSize bounds the DIDs waiting for a worker; Enqueue returns
	// false beyond it (relay_resync_rejected_total). Default 10,000.
	QueueSize int
	// MaxRepoBytes bounds one repository CAR; a larger one ends as
	// too_large (at once when its Content-Length says so). Default 256 MiB.
	MaxRepoBytes int64
	// MemoryBytes is the resync share of the memory budget
	// (memory.Shares.Resync): all resyncs together never reserve more.
	// It counts each repository's body buffers (old and new while one
	// grows) and its verification scratch, from the first buffer until
	// OnResult returns; see the package doc. A repository that alone needs
	// more ends as too_large, so in practice MemoryBytes/2 bounds what
	// can be resynced below MaxRepoBytes. Default 64 MiB.
	MemoryBytes int64
	// FetchTimeout bounds one getRepo attempt, waits for the memory
	// share and the whole body included. Default 2 min.
	FetchTimeout time.Duration
	// MinReadBytesPerSecond and MinRateWindow drop a body that trickles:
	// every MinRateWindow of reading must bring MinReadBytesPerSecond ×
	// MinRateWindow bytes, else the attempt fails (ErrSlowBody, retried
	// like a timeout). Time spent waiting for the memory share does not
	// count. Defaults 16 KiB/s over 10 s.
	MinReadBytesPerSecond int64
	MinRateWindow         time.Duration
	// AllowInsecureHosts lets development hosts (localhost:PORT, loopback
	// addresses) be fetched over http:// and lets the default client dial
	// private addresses. Default false: https only, public addresses only.
	AllowInsecureHosts bool
	// HTTPClient performs the fetches; nil builds one with dial, TLS and
	// header timeouts that follows no redirect and (unless AllowInsecureHosts)
	// refuses to dial non-public addresses. A caller's client is used as
	// given.
	HTTPClient *http.Client
	// Verify bounds repository verification (block count and size, future
	// rev tolerance).
	Verify verify.RepoConfig
	// Buffers supplies repository buffers; nil builds a private pool whose
	// metrics go to Metrics under pool="resync".
	Buffers *pool.Buffers
	// Metrics receives the resyncer's metrics; nil means a private set.
	// The names must not already exist in it.
	Metrics *metrics.Set
	// Logger logs failed resyncs; nil discards.
	Logger *slog.Logger
	// UserAgent is sent with every fetch. Default "relay-resync".
	UserAgent string
}

// ErrConfig reports a Config without Identities or OnResult.
var ErrConfig = errors.New("resync: Config needs Identities and OnResult")

func (c Config) withDefaults() Config {
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.RatePerSecond <= 0 {
		c.RatePerSecond = DefaultRatePerSecond
	}
	if c.Burst <= 0 {
		c.Burst = DefaultBurst
	}
	if c.Retries == 0 {
		c.Retries = DefaultRetries
	}
	if c.Retries < 0 {
		c.Retries = 0
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.MaxRepoBytes <= 0 {
		c.MaxRepoBytes = DefaultMaxRepoBytes
	}
	if c.MemoryBytes <= 0 {
		c.MemoryBytes = DefaultMemoryBytes
	}
	if c.FetchTimeout <= 0 {
		c.FetchTimeout = DefaultFetchTimeout
	}
	if c.MinReadBytesPerSecond <= 0 {
		c.MinReadBytesPerSecond = DefaultMinReadBytesPerSecond
	}
	if c.MinRateWindow <= 0 {
		c.MinRateWindow = DefaultMinRateWindow
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
	if c.Buffers == nil {
		c.Buffers = pool.NewBuffers(c.Metrics, "resync")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if c.HTTPClient == nil {
		c.HTTPClient = newClient(c.AllowInsecureHosts)
	}
	return c
}

// Outcome is how one resync ended. The set is closed; String is the metric
// label and AllOutcomes lists every value.
type Outcome uint8

// The outcomes.
const (
	// OK: the repository verified; Result.State holds its head.
	OK Outcome = iota
	// NotFound: the PDS has no such repository (RepoNotFound or 404).
	NotFound
	// Deactivated: the PDS answered RepoDeactivated.
	Deactivated
	// Takendown: the PDS answered RepoTakendown.
	Takendown
	// Suspended: the PDS answered RepoSuspended.
	Suspended
	// FetchError: the PDS could not be reached or answered an unexpected
	// status, after the retries.
	FetchError
	// TooLarge: the repository exceeds MaxRepoBytes, or needs more than
	// all of MemoryBytes.
	TooLarge
	// VerifyError: the repository failed verification; Result.Reason says
	// which check.
	VerifyError
	// IdentityError: the DID did not resolve to a key and a usable PDS.
	IdentityError
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	OK:            "ok",
	NotFound:      "not_found",
	Deactivated:   "deactivated",
	Takendown:     "takendown",
	Suspended:     "suspended",
	FetchError:    "fetch_error",
	TooLarge:      "too_large",
	VerifyError:   "verify_error",
	IdentityError: "identity_error",
}

// String returns the metric label ("unknown" outside the set).
func (o Outcome) String() string { return label.Of(outcomeNames[:], o) }

// AllOutcomes returns every outcome, for creating counters at zero.
func AllOutcomes() []Outcome {
	out := make([]Outcome, numOutcomes)
	for i := range out {
		out[i] = Outcome(i)
	}
	return out
}

// Result is the end of one resync, passed to Config.OnResult.
type Result struct {
	// Outcome is how it ended.
	Outcome Outcome
	// Err is the detail of a failure (nil for OK), wrapping the sentinel
	// of its cause (this package's, verify's *RepoError, identity's,
	// net/http's). For logs and errors.Is; Outcome is the contract.
	Err error
	// Reason is the failed check when Outcome is VerifyError
	// (verify.ReasonNone otherwise).
	Reason verify.Reason
	// State is the verified head when Outcome is OK. Its byte views
	// alias the fetch buffer: valid only during OnResult.
	State verify.RepoState
	// Identity is the freshly resolved identity the repository was
	// fetched from and verified against (zero on IdentityError). When its
	// PDSHost differs from Host the account has migrated.
	Identity identity.Identity
	// Host is the host given to Enqueue (the one that reported the break).
	Host string
	// Attempts counts getRepo requests made (0 when resolution failed).
	Attempts int
	// Bytes is the size of the fetched repository CAR.
	Bytes int
}
