package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/engine/jetstream"
	"github.com/atrelay/relay/engine/memory"
	"github.com/atrelay/relay/engine/relay"
	"github.com/atrelay/relay/engine/resync"
	"github.com/atrelay/relay/engine/upstream"
	"github.com/atrelay/relay/engine/verify"
	"github.com/atrelay/relay/engine/xrpc"
	"github.com/atrelay/relay/store"
)

// The settings of `relay serve` are one table, settingsTable: each entry
// names a flag, its RELAY_* environment variable, the built-in default, the
// kind of value, the help text and the field it fills. The table drives the
// flags, `relay serve -h`, and deploy/relay.env (`relay serve --print-env`,
// checked by TestRelayEnvMatchesTable), so a default is written once.
//
// Where a value comes from, last one wins:
//
//  1. the entry's built-in default;
//  2. its environment variable, when set to a non-empty string;
//  3. its flag on the command line.
//
// Unset means default: an absent variable, a variable set to "", and a flag
// given "" all leave the built-in default in place. One setting is the
// exception, marked emptyIsValue: RELAY_SEED_HOSTS_URL, where empty is a
// value (bootstrapping off), so that `RELAY_SEED_HOSTS_URL=` in the
// environment file does what it reads as. Numbers take no implicit
// meaning from 0: each help text says what 0 does where it is allowed (for
// the cache and buffer sizes, a share of the memory budget).
//
// Adding a setting is one entry: point its value at a field of Settings,
// usually a field of the engine Config that Settings carries, then run
// `go run ./cmd/relay serve --print-env > deploy/relay.env`.

// Settings holds every value of `relay serve`. It embeds the engine
// configurations so a table entry can fill any of their fields directly;
// buildApp copies them and adds what no setting carries (dependencies,
// metrics, loggers, the memory shares). A plain value.
type Settings struct {
	APIListen   string
	AdminListen string
	DataDir     string
	AdminToken  string
	LogLevel    slog.Level
	LogFormat   string
	// AllowInsecureHosts goes to the relay, the identity resolver and the
	// resyncer alike.
	AllowInsecureHosts bool
	// TestCAFile is a PEM file of a test CA trusted for upstream TLS (for
	// tests only; needs AllowInsecureHosts).
	TestCAFile string
	testHTTP   *http.Client // from TestCAFile: the relay's describeServer client
	// Trim runs the heap trimmer.
	Trim bool
	// IdentityDisk keeps resolved identities in the database.
	IdentityDisk bool
	// AdminOnAPI also serves /admin/ on the public listener (the reference
	// relay's layout).
	AdminOnAPI bool
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client (the public API, the firehose and Jetstream alike).
	TrustedProxies []netip.Prefix
	// MaxHTTPConns and MaxHTTPConnsPerIP bound the public listener's
	// connections not hijacked by a WebSocket endpoint (0: the defaults;
	// the total is lowered to the memory budget's HTTP share).
	MaxHTTPConns, MaxHTTPConnsPerIP int
	// Warnings are the settings problems that are not errors (an alias
	// that disagrees with our name, a reference setting ignored), logged
	// once the logger exists.
	Warnings []string
	// Sizes are the explicit cache and buffer sizes; zero ones take their
	// share of the memory budget.
	Sizes sizeOverrides

	Memory   memory.Config
	Store    store.Options // BlockCacheBytes and MemTableBytes come from the memory shares
	Identity identity.Config
	Relay    relay.Config // IntakeBytes and ResultsQueueBytes come from the memory shares
	Firehose firehose.Config
	Resync   resync.Config
	XRPC     xrpc.Config
	// Jetstream configures the Jetstream-compatible JSON stream (GET /subscribe).
	Jetstream jetstream.Config
}

// sizeOverrides are the explicitly configured sizes; zero fields take their
// share of the memory budget.
type sizeOverrides struct{ identity, cache, memTable, ring, resync int64 }

// apply returns the budget's shares with the overrides in place.
func (o sizeOverrides) apply(budget int64) memory.Shares {
	sh := memory.SharesOf(budget)
	for _, x := range []struct {
		dst *int64
		v   int64
	}{{&sh.IdentityCache, o.identity}, {&sh.BlockCache, o.cache}, {&sh.MemTable, o.memTable}, {&sh.Ring, o.ring}, {&sh.Resync, o.resync}} {
		if x.v > 0 {
			*x.dst = x.v
		}
	}
	return sh
}

// setting is one entry of the table.
type setting struct {
	flag  string // flag name, without dashes
	env   string // environment variable
	group string // heading in -h and relay.env
	def   string // built-in default, in the value's own syntax
	// deploy is the value deploy/relay.env carries when it differs from
	// def (the systemd layout's data directory and memory budget).
	deploy string
	// emptyIsValue makes "" a value instead of "unset" (see the top).
	emptyIsValue bool
	// aliases are the reference relay's names for the same setting
	// (indigo cmd/relay), read when env is unset; see refAlias.
	aliases []refAlias
	help    string
	value   value
}

// refAlias is one of the reference relay's environment variables that
// means the same as a setting, so its environment file works unchanged.
// conv, when set, turns the reference's value into ours (where the two
// relays measure the setting differently); nil means the same syntax.
type refAlias struct {
	env  string
	conv func(string) (string, error)
}

// ignoredRefEnv are the reference relay's variables that have no meaning
// here; serve warns once for each one set, so an operator switching relays
// knows it was not silently applied.
var ignoredRefEnv = map[string]string{
	"DATABASE_URL":                "all state is in Pebble under RELAY_DATA_DIR",
	"MAX_DB_CONNECTIONS":          "no SQL database",
	"MAX_METADB_CONNECTIONS":      "no SQL database",
	"RELAY_PERSIST_DIR":           "the event log is in Pebble under RELAY_DATA_DIR",
	"RELAY_PERSISTER_DIR":         "the event log is in Pebble under RELAY_DATA_DIR",
	"RELAY_HOST_CONCURRENCY":      "events are validated by a fixed pool of RELAY_WORKERS, keyed by account",
	"RELAY_CONCURRENCY_PER_PDS":   "events are validated by a fixed pool of RELAY_WORKERS, keyed by account",
	"RELAY_SIBLING_RELAYS":        "admin actions are not forwarded to other relays",
	"ENVIRONMENT":                 "no environment-specific behaviour",
	"OTEL_EXPORTER_OTLP_ENDPOINT": "no OpenTelemetry export; scrape /metrics",
}

// identCacheEntryBytes converts the reference's RELAY_IDENT_CACHE_SIZE (a
// count of identities) into the identity cache budget (bytes): a generous
// per-identity cost, so a count sized for the reference never starves ours.
const identCacheEntryBytes = 512

// lenientToValidation maps RELAY_LENIENT_SYNC_VALIDATION (a boolean) onto
// the validation enum.
func lenientToValidation(v string) (string, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return "", errors.New("want true or false")
	}
	if b {
		return "lenient", nil
	}
	return "strict", nil
}

// identCountToBytes maps RELAY_IDENT_CACHE_SIZE (identities) onto the
// identity cache budget (bytes).
func identCountToBytes(v string) (string, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1<<40/identCacheEntryBytes {
		return "", errors.New("want a count of identities")
	}
	return strconv.FormatInt(n*identCacheEntryBytes, 10) + "B", nil
}

// lower maps the reference's log level names (any case) onto ours.
func lower(v string) (string, error) { return strings.ToLower(v), nil }

// value parses a setting's text into its field.
type value struct {
	kind    string   // shown by -h: string, list, bytes, duration, int, float, bool, enum
	choices []string // the words an enum accepts
	set     func(string) error
}

// Headings, in the order -h and relay.env show them.
const (
	groupNetwork   = "Network"
	groupStorage   = "Storage"
	groupUpstream  = "Upstream hosts (PDSes)"
	groupIdentity  = "Identity resolution (PLC and did:web)"
	groupMemory    = "Memory"
	groupJetstream = "Jetstream (JSON stream at GET /subscribe)"
	groupAdmin     = "Admin and logs"
)

// settingsTable returns the table with every value bound to a field of s.
func settingsTable(s *Settings) []setting {
	return []setting{
		{flag: "api-listen", env: "RELAY_API_LISTEN", group: groupNetwork, def: ":2470",
			help:    "Public API and firehose (com.atproto.sync.subscribeRepos) listen address.",
			aliases: []refAlias{{env: "RELAY_API_BIND"}},
			value:   stringValue(&s.APIListen)},
		{flag: "admin-listen", env: "RELAY_METRICS_LISTEN", group: groupNetwork, def: "127.0.0.1:2471",
			help: "Admin API, /metrics (no token) and pprof listen address; loopback only by default. " +
				"To scrape /metrics from another machine, listen on a private address or on :2471 " +
				"behind a firewall that admits only the monitoring host.",
			value: stringValue(&s.AdminListen)},

		{flag: "data-dir", env: "RELAY_DATA_DIR", group: groupStorage, def: "./data", deploy: "/var/lib/relay",
			help:  "Directory of the Pebble database. Under systemd it must be the unit's StateDirectory.",
			value: stringValue(&s.DataDir)},
		{flag: "replay-window", env: "RELAY_REPLAY_WINDOW", group: groupStorage, def: formatDuration(store.DefaultReplayWindow),
			help:    "How long events stay replayable by cursor (the backfill window); at least 1m.",
			aliases: []refAlias{{env: "RELAY_EVENT_PLAYBACK_TTL"}},
			value:   durationValue(&s.Store.ReplayWindow)},
		{flag: "disk-budget", env: "RELAY_DISK_BUDGET", group: groupStorage, def: "0",
			help: "Disk space the event log may use before the oldest events are dropped ahead of " +
				"the replay window. 0: no size cap (the time window only).",
			value: bytesValue(&s.Store.DiskBudgetBytes)},
		{flag: "sync-policy", env: "RELAY_SYNC_POLICY", group: groupStorage, def: "every-batch",
			help: "Durability of the event log: every-batch fsyncs each write batch before its events " +
				"are broadcast; none leaves syncing to the OS (faster, loses the last seconds on power failure).",
			value: enumValue(&s.Store.Sync, choice[store.SyncPolicy]{"every-batch", store.SyncEveryBatch},
				choice[store.SyncPolicy]{"none", store.NoSync})},
		{flag: "sync-interval", env: "RELAY_SYNC_INTERVAL", group: groupStorage, def: formatDuration(store.DefaultSyncInterval),
			help: "Least time between two fsyncs under every-batch, at most " + formatDuration(store.MaxSyncInterval) +
				". Batches that come sooner are written at once and share the next fsync: at most this much " +
				"more latency, far fewer fsyncs under load. 0: fsync each batch at once.",
			value: durationValue(&s.Store.SyncInterval)},
		{flag: "initial-seq", env: "RELAY_INITIAL_SEQ", group: groupStorage, def: "1",
			help: "The relay's next sequence number is at least this (at least 1): a brand-new database starts " +
				"here, and an existing one whose next seq is lower jumps forward to it (consumers see a gap in " +
				"seqs, which the protocol allows), as the reference relay's RELAY_INITIAL_SEQ_NUMBER does. " +
				"Used when switching relays, so consumers' cursors stay below every new seq.",
			aliases: []refAlias{{env: "RELAY_INITIAL_SEQ_NUMBER"}},
			value:   intValue(&s.Store.InitialSeq, 1)},

		{flag: "plc-host", env: "RELAY_PLC_HOST", group: groupIdentity, def: "https://plc.directory",
			help:    "PLC directory used to resolve did:plc identities.",
			aliases: []refAlias{{env: "ATP_PLC_HOST"}},
			value:   stringValue(&s.Identity.PLCURL)},
		{flag: "plc-max-in-flight", env: "RELAY_PLC_MAX_IN_FLIGHT", group: groupIdentity, def: fmt.Sprint(identity.DefaultPLCMaxInFlight),
			help:  "Concurrent requests to the PLC directory. 0: the default.",
			value: intValue(&s.Identity.PLCMaxInFlight, 0)},
		{flag: "plc-max-rate", env: "RELAY_PLC_MAX_RATE", group: groupIdentity, def: fmt.Sprint(identity.DefaultPLCMaxRate),
			help: "Requests per second the relay sends the PLC directory at most; a 429 answer cuts the pace (and its " +
				"Retry-After is honoured), which recovers slowly. 0: the default.",
			value: floatValue(&s.Identity.PLCMaxRate)},
		{flag: "identity-retry-timeout", env: "RELAY_IDENTITY_RETRY_TIMEOUT", group: groupIdentity,
			def: formatDuration(relay.DefaultIdentityRetryTimeout),
			help: "How long an event whose account's identity is unavailable for a passing reason (a slow, failing or " +
				"rate-limiting directory) waits, parked in order, before it is rejected as identity_unavailable. 0: the default.",
			value: durationValue(&s.Relay.IdentityRetryTimeout)},
		{flag: "plc-timeout", env: "RELAY_PLC_TIMEOUT", group: groupIdentity, def: formatDuration(identity.DefaultPLCRequestTimeout),
			help:  "Deadline of one PLC directory request, body included. 0: the default.",
			value: durationValue(&s.Identity.PLCRequestTimeout)},
		{flag: "plc-hedge-after", env: "RELAY_PLC_HEDGE_AFTER", group: groupIdentity, def: formatDuration(identity.DefaultPLCHedgeAfter),
			help: "A PLC request not answered after this long gets one second request for the same DID (the hedge); " +
				"the first answer wins, so a request the directory never answers stalls its host for about this long " +
				"instead of a timeout. The hedge takes a free request slot and a turn in the pace, never after a 429; the " +
				"first attempt's deadline is at most twice this. 0: the default; off: no hedging.",
			value: hedgeValue(&s.Identity.PLCHedgeAfter)},
		{flag: "plc-allow-private", env: "RELAY_PLC_ALLOW_PRIVATE", group: groupIdentity, def: "false",
			help: "Let the PLC directory URL resolve to a loopback or private address (an operator's own " +
				"directory mirror); every other outbound request stays on public addresses.",
			value: boolValue(&s.Identity.PLCAllowPrivate)},
		{flag: "identity-disk", env: "RELAY_IDENTITY_DISK", group: groupIdentity, def: "true",
			help: "Keep resolved identities in the database (about 90 B each) so a restart serves them without " +
				"asking the PLC directory again; the memory cache holds the hot ones.",
			value: boolValue(&s.IdentityDisk)},
		{flag: "identity-disk-max-age", env: "RELAY_IDENTITY_DISK_MAX_AGE", group: groupIdentity, def: formatDuration(identity.DefaultDiskMaxAge),
			help: "Identities stored longer than the cache TTL are served while re-resolved in the background; " +
				"older than this they are deleted and resolved again. 0: the default.",
			value: durationValue(&s.Identity.DiskMaxAge)},
		{flag: "identity-disk-max-rows", env: "RELAY_IDENTITY_DISK_MAX_ROWS", group: groupIdentity, def: fmt.Sprint(identity.DefaultDiskMaxRows),
			help:  "Identities kept on disk at most (about 90 B each); above it new ones are not stored. 0: the default.",
			value: intValue(&s.Identity.DiskMaxRows, 0)},
		{flag: "did-web-max-in-flight", env: "RELAY_DID_WEB_MAX_IN_FLIGHT", group: groupIdentity, def: fmt.Sprint(identity.DefaultWebMaxInFlight),
			help: "Concurrent did:web document requests, apart from the PLC ones so that slow did:web " +
				"hosts never delay did:plc accounts. 0: the default.",
			value: intValue(&s.Identity.WebMaxInFlight, 0)},
		{flag: "did-web-max-per-domain", env: "RELAY_DID_WEB_MAX_PER_DOMAIN", group: groupIdentity, def: fmt.Sprint(identity.DefaultWebMaxPerDomain),
			help:  "Concurrent did:web requests to one domain (its last two labels). 0: the default.",
			value: intValue(&s.Identity.WebMaxPerDomain, 0)},
		{flag: "did-web-timeout", env: "RELAY_DID_WEB_TIMEOUT", group: groupIdentity, def: formatDuration(identity.DefaultWebRequestTimeout),
			help:  "Deadline of one did:web resolution, counted from when it starts waiting for a request slot. 0: the default.",
			value: durationValue(&s.Identity.WebRequestTimeout)},
		{flag: "resync-memory", env: "RELAY_RESYNC_MEMORY", group: groupMemory, def: "0",
			help: "Memory all repository resyncs (getRepo bodies and their verification) may hold at once; a " +
				"repository larger than about half of it cannot be resynced. 0: derived from the memory budget " +
				"(1/32 of it, at most 256 MiB; see memory.SharesOf for small budgets).",
			value: bytesValue(&s.Sizes.resync)},
		{flag: "default-account-limit", env: "RELAY_DEFAULT_ACCOUNT_LIMIT", group: groupUpstream, def: fmt.Sprint(relay.DefaultAccountLimit),
			help:    "Accounts a newly seen host may serve before its further new accounts are throttled. 0: the default.",
			aliases: []refAlias{{env: "RELAY_DEFAULT_REPO_LIMIT"}},
			value:   intValue(&s.Relay.DefaultAccountLimit, 0)},
		{flag: "trusted-domains", env: "RELAY_TRUSTED_DOMAINS", group: groupUpstream, def: "*.host.bsky.network",
			help: "Comma-separated host patterns trusted without the per-host account limit and with the " +
				"trusted event rate: *.domain (any subdomain), an exact hostname, or name:* (that name on " +
				"any port). For benchmarks against local development hosts (with RELAY_ALLOW_INSECURE_HOSTS=true) " +
				"add localhost:*, e.g. *.host.bsky.network,localhost:*",
			value: listValue(&s.Relay.TrustedDomains)},
		{flag: "new-hosts-per-day", env: "RELAY_NEW_HOSTS_PER_DAY", group: groupUpstream, def: fmt.Sprint(relay.DefaultNewHostsPerDay),
			help:    "New hosts accepted through public requestCrawl per UTC day. 0: the default.",
			aliases: []refAlias{{env: "RELAY_NEW_HOSTS_PER_DAY_LIMIT"}},
			value:   intValue(&s.Relay.NewHostsPerDay, 0)},
		{flag: "max-hosts", env: "RELAY_MAX_HOSTS", group: groupUpstream, def: fmt.Sprint(relay.DefaultMaxHosts),
			help: "Subscribed hosts at most; past it requestCrawl answers 429. A wss:// host can make the relay " +
				"hold up to about 87 KiB (its TLS buffers, certificate chain and state), so the memory budget " +
				"lowers this to what its hosts share holds: about 3,000 hosts at 1 GiB, 1,500 at 512 MiB. 0: the default.",
			value: intValue(&s.Relay.MaxHosts, 0)},
		{flag: "events-per-second", env: "RELAY_EVENTS_PER_SECOND", group: groupUpstream, def: fmt.Sprint(relay.DefaultEventsPerSecond),
			help: "Events per second an untrusted host may send, plus its account limit / 1000. Faster " +
				"events wait (back-pressure); none is dropped. 0: the default.",
			value: floatValue(&s.Relay.EventsPerSecond)},
		{flag: "trusted-events-per-second", env: "RELAY_TRUSTED_EVENTS_PER_SECOND", group: groupUpstream,
			def:   fmt.Sprint(relay.DefaultTrustedEventsPerSecond),
			help:  "Events per second a trusted host may send; faster events wait, none is dropped. 0: the default.",
			value: floatValue(&s.Relay.TrustedEventsPerSecond)},
		{flag: "seed-hosts-url", env: "RELAY_SEED_HOSTS_URL", group: groupUpstream, def: "https://bsky.network", emptyIsValue: true,
			help: "Relay whose host list (com.atproto.sync.listHosts) seeds an empty database on first " +
				"start. Empty turns bootstrapping off: the one setting where an empty value is not the default.",
			value: stringValue(&s.Relay.SeedHostsURL)},
		{flag: "disable-request-crawl", env: "RELAY_DISABLE_REQUEST_CRAWL", group: groupUpstream, def: "false",
			help:  "Refuse public com.atproto.sync.requestCrawl (admins can still add hosts); the admin API's subs/setEnabled switches it at run time.",
			value: boolValue(&s.Relay.DisablePublicCrawl)},
		{flag: "allow-insecure-hosts", env: "RELAY_ALLOW_INSECURE_HOSTS", group: groupUpstream, def: "false",
			help:  "Accept localhost:PORT hosts over ws:// and http:// (local testing only).",
			value: boolValue(&s.AllowInsecureHosts)},
		{flag: "test-ca-file", env: "RELAY_TEST_CA_FILE", group: groupUpstream, def: "",
			help: "PEM file of a certificate authority trusted, besides the system roots, for upstream wss:// and " +
				"https:// (firehose, describeServer, getRepo). For tests only (relay bench --tls); needs " +
				"--allow-insecure-hosts. Empty: system roots only.",
			value: stringValue(&s.TestCAFile)},
		{flag: "validation", env: "RELAY_VALIDATION", group: groupUpstream, def: "strict",
			help: "Commit validation: strict rejects any commit that fails a check; lenient passes some " +
				"(counted) legacy-format problems through.",
			aliases: []refAlias{{env: "RELAY_LENIENT_SYNC_VALIDATION", conv: lenientToValidation}},
			value: enumValue(&s.Relay.Validation, choice[verify.Mode]{"strict", verify.Strict},
				choice[verify.Mode]{"lenient", verify.Lenient})},
		{flag: "publish-order", env: "RELAY_PUBLISH_ORDER", group: groupUpstream, def: "account",
			help: "Order of one host's events on the firehose: account keeps each account's events in upstream " +
				"order (as the reference relay does) and lets a host's commits pass an earlier frame of another " +
				"account still waiting for its DID document; host keeps the host's upstream order, so the output " +
				"depends on the input alone, and a new account's PLC lookup delays its host's later events.",
			value: enumValue(&s.Relay.Order, choice[relay.PublishOrder]{"account", relay.OrderAccount},
				choice[relay.PublishOrder]{"host", relay.OrderHost})},
		{flag: "upstream-max-dials", env: "RELAY_UPSTREAM_MAX_DIALS", group: groupUpstream, def: fmt.Sprint(upstream.DefaultMaxConcurrentDials),
			help:  "Upstream WebSocket dials in progress at once (reconnect storms queue behind them). 0: the default.",
			value: intValue(&s.Relay.Upstream.MaxConcurrentDials, 0)},
		{flag: "upstream-message-timeout", env: "RELAY_UPSTREAM_MESSAGE_TIMEOUT", group: groupUpstream, def: formatDuration(upstream.DefaultMessageTimeout),
			help: "Time one upstream message may take from its first byte to its last; a host trickling a " +
				"frame to hold its buffer is disconnected after it. 0: the default.",
			value: durationValue(&s.Relay.Upstream.MessageTimeout)},
		{flag: "upstream-max-pings-per-second", env: "RELAY_UPSTREAM_MAX_PINGS_PER_SECOND", group: groupUpstream,
			def:   fmt.Sprint(upstream.DefaultMaxPingsPerSecond),
			help:  "Sustained WebSocket pings per second a host may send (bursts of twice that); above it the connection is dropped. 0: the default.",
			value: intValue(&s.Relay.Upstream.MaxPingsPerSecond, 0)},
		{flag: "workers", env: "RELAY_WORKERS", group: groupUpstream, def: "0",
			help:  "Event-processing workers. 0: GOMAXPROCS (under systemd, from the unit's CPU quota).",
			value: intValue(&s.Relay.Workers, 0)},

		{flag: "memory-budget", env: "RELAY_MEMORY_BUDGET", group: groupMemory, def: "0", deploy: "4GiB",
			help: "Memory of the whole process; under systemd it must equal MemoryHigh in relay.service. " +
				"The relay sets GOMEMLIMIT to it minus max(1/10 of it, 32 MiB) minus off-heap caches, and every cache, queue and " +
				"consumer limit is a share of it (engine/memory/shares.go); the smallest budget that runs is 84 MiB. 0: the cgroup limit " +
				"(MemoryHigh/MemoryMax), else the machine's memory.",
			value: bytesValue(&s.Memory.Budget)},
		{flag: "gogc", env: "RELAY_GOGC", group: groupMemory, def: fmt.Sprint(memory.DefaultGOGC),
			help: "Go GC target percentage; -1 collects only when nearing GOMEMLIMIT; 0: the default. The " +
				"GOGC and GOMEMLIMIT variables, when set, win over this and the budget.",
			value: intValue(&s.Memory.GOGC, -1)},
		{flag: "trim-interval", env: "RELAY_TRIM_INTERVAL", group: groupMemory, def: formatDuration(memory.DefaultTrimInterval),
			help:  "Least time between two returns of idle heap to the OS (each is a forced GC). 0: the default.",
			value: durationValue(&s.Memory.TrimInterval)},
		{flag: "trim", env: "RELAY_TRIM", group: groupMemory, def: "true",
			help: "Run the heap trimmer (debug.FreeOSMemory when idle heap passes 1/64 of the budget, " +
				"4-256 MiB); false turns it off, for measurements. PERF.md measures both.",
			value: boolValue(&s.Trim)},
		{flag: "identity-cache-budget", env: "RELAY_IDENTITY_CACHE_BUDGET", group: groupMemory, def: "0",
			help:    "Memory for cached DID documents and handles. 0: derived from the memory budget (1/8 of it).",
			aliases: []refAlias{{env: "RELAY_IDENT_CACHE_SIZE", conv: identCountToBytes}, {env: "RELAY_DID_CACHE_SIZE", conv: identCountToBytes}},
			value:   bytesValue(&s.Sizes.identity)},
		{flag: "firehose-buffer", env: "RELAY_FIREHOSE_BUFFER", group: groupMemory, def: "0",
			help: "Recent frames kept in memory for consumers; older ones are read from disk. 0: derived " +
				"from the memory budget (1/4 of it).",
			value: bytesValue(&s.Sizes.ring)},
		{flag: "pebble-cache", env: "RELAY_PEBBLE_CACHE", group: groupMemory, def: "0",
			help:  "Pebble block cache, outside the Go heap. 0: derived from the memory budget (1/16 of it, 2 MiB-1 GiB).",
			value: bytesValue(&s.Sizes.cache)},
		{flag: "pebble-memtable", env: "RELAY_PEBBLE_MEMTABLE", group: groupMemory, def: "0",
			help: "One Pebble memtable, outside the Go heap; up to 4 exist at once. 0: derived from the " +
				"memory budget (1/128 of it, 1-64 MiB).",
			value: bytesValue(&s.Sizes.memTable)},

		{flag: "jetstream-max-subscribers", env: "RELAY_JETSTREAM_MAX_SUBSCRIBERS", group: groupJetstream,
			def:   fmt.Sprint(jetstream.DefaultMaxSubscribers),
			help:  "Concurrent Jetstream subscribers; more get HTTP 503. 0: the default.",
			value: intValue(&s.Jetstream.MaxSubscribers, 0)},
		{flag: "jetstream-max-subscribers-per-ip", env: "RELAY_JETSTREAM_MAX_SUBSCRIBERS_PER_IP", group: groupJetstream,
			def:   fmt.Sprint(jetstream.DefaultMaxSubscribersPerIP),
			help:  "Concurrent Jetstream subscribers per IPv4 address or IPv6 /64; one more gets HTTP 429. 0: the default.",
			value: intValue(&s.Jetstream.MaxSubscribersPerIP, 0)},
		{flag: "jetstream-queue-bytes", env: "RELAY_JETSTREAM_QUEUE_BYTES", group: groupJetstream,
			def: fmt.Sprintf("%dMiB", jetstream.DefaultQueueBytes>>20),
			help: "Messages one Jetstream subscriber may have waiting; a subscriber further behind is " +
				"disconnected as too slow. At most the backlog (--jetstream-backlog-bytes). 0: the default.",
			value: bytesValue(&s.Jetstream.QueueBytes)},
		{flag: "jetstream-backlog-bytes", env: "RELAY_JETSTREAM_BACKLOG_BYTES", group: groupJetstream,
			def: fmt.Sprintf("%dMiB", jetstream.DefaultBacklogBytes>>20),
			help: "How far behind the newest messages a Jetstream subscriber may fall, in bytes of messages made " +
				"since its oldest unsent one, before it is disconnected as too slow. Subscribers share their " +
				"messages, so this bounds what all of them hold back together; at most a quarter of the memory " +
				"budget's Jetstream share. 0: the default.",
			value: bytesValue(&s.Jetstream.BacklogBytes)},
		{flag: "jetstream-max-replays", env: "RELAY_JETSTREAM_MAX_REPLAYS", group: groupJetstream,
			def:   fmt.Sprint(jetstream.DefaultMaxReplays),
			help:  "Jetstream subscribers replaying from a cursor at once; others wait their turn. 0: the default.",
			value: intValue(&s.Jetstream.MaxReplays, 0)},

		{flag: "admin-password", env: "RELAY_ADMIN_PASSWORD", group: groupAdmin, def: "",
			help: "Bearer token of the admin API and pprof, which stay off while it is empty. Set it " +
				"before the first start; generate it with: openssl rand -hex 32",
			aliases: []refAlias{{env: "RELAY_ADMIN_KEY"}},
			value:   stringValue(&s.AdminToken)},
		{flag: "admin-on-api", env: "RELAY_ADMIN_ON_API", group: groupAdmin, def: "false",
			help: "Also serve the admin API (/admin/) on the public listener, the reference relay's layout " +
				"(its admin web UI and goat expect it there). The password then faces the internet: use it only " +
				"behind TLS with a long random password, or restrict /admin/ at the proxy. pprof stays on the admin listener.",
			value: boolValue(&s.AdminOnAPI)},
		{flag: "trusted-proxies", env: "RELAY_TRUSTED_PROXIES", group: groupNetwork, def: "",
			help: "Comma-separated networks of reverse proxies (e.g. 127.0.0.1/32,::1/128 for Caddy or nginx on " +
				"this machine) whose X-Forwarded-For names the client for the per-client limits (requestCrawl, " +
				"consumers, Jetstream subscribers), logs and the admin consumer list. Empty: the TCP peer is the " +
				"client and the header is ignored (anyone can write it). Behind a proxy, set it, or every client " +
				"shares one limit.",
			value: prefixListValue(&s.TrustedProxies)},
		{flag: "max-consumers", env: "RELAY_MAX_CONSUMERS", group: groupNetwork, def: fmt.Sprint(firehose.DefaultMaxConsumers),
			help: "Concurrent subscribeRepos consumers; one more gets HTTP 503. An idle consumer costs about " +
				"14 KiB, one replaying from disk about 100 KiB. 0: the default.",
			value: intValue(&s.Firehose.MaxConsumers, 0)},
		{flag: "max-consumers-per-ip", env: "RELAY_MAX_CONSUMERS_PER_IP", group: groupNetwork, def: fmt.Sprint(firehose.DefaultMaxConsumersPerIP),
			help:  "Concurrent consumers per IPv4 address or IPv6 /64; one more gets HTTP 429. 0: the default.",
			value: intValue(&s.Firehose.MaxConsumersPerIP, 0)},
		{flag: "max-http-connections", env: "RELAY_MAX_HTTP_CONNECTIONS", group: groupNetwork, def: fmt.Sprint(defaultMaxHTTPConns),
			help: "Open connections to the public listener besides consumers and Jetstream subscribers (requests " +
				"being read or answered, idle keep-alive ones); one more is closed unanswered. Lowered to the memory " +
				"budget's share (48 KiB each at worst). 0: the default.",
			value: intValue(&s.MaxHTTPConns, 0)},
		{flag: "max-http-connections-per-ip", env: "RELAY_MAX_HTTP_CONNECTIONS_PER_IP", group: groupNetwork,
			def: fmt.Sprint(defaultMaxHTTPConnsPerIP),
			help: "The same per IPv4 address or IPv6 /64 of the TCP peer; a trusted proxy (--trusted-proxies) and " +
				"loopback peers are held to the total only. 0: the default.",
			value: intValue(&s.MaxHTTPConnsPerIP, 0)},
		{flag: "crawl-requests-per-minute", env: "RELAY_CRAWL_REQUESTS_PER_MINUTE", group: groupNetwork,
			def:   fmt.Sprint(xrpc.DefaultCrawlRequestsPerMinute),
			help:  "Public requestCrawl calls per client per minute; beyond it HTTP 429. 0: the default.",
			value: intValue(&s.XRPC.CrawlRequestsPerMinute, 0)},
		{flag: "crawl-max-probes", env: "RELAY_CRAWL_MAX_PROBES", group: groupNetwork, def: fmt.Sprint(relay.DefaultMaxConcurrentProbes),
			help:  "describeServer probes of requestCrawl in flight at once; beyond it HTTP 429. 0: the default.",
			value: intValue(&s.Relay.MaxConcurrentProbes, 0)},
		{flag: "log-level", env: "RELAY_LOG_LEVEL", group: groupAdmin, def: "info",
			help:    "Log level.",
			aliases: []refAlias{{env: "GO_LOG_LEVEL", conv: lower}, {env: "LOG_LEVEL", conv: lower}},
			value: enumValue(&s.LogLevel, choice[slog.Level]{"debug", slog.LevelDebug}, choice[slog.Level]{"info", slog.LevelInfo},
				choice[slog.Level]{"warn", slog.LevelWarn}, choice[slog.Level]{"error", slog.LevelError})},
		{flag: "log-format", env: "RELAY_LOG_FORMAT", group: groupAdmin, def: "json",
			help:  "Log format.",
			value: enumValue(&s.LogFormat, choice[string]{"json", "json"}, choice[string]{"text", "text"})},
	}
}

// parseSettings fills Settings from the table: each default, then the
// environment (read through lookupEnv), then the flags in args. Usage and
// flag errors go to out. printEnv reports --print-env. Every malformed
// variable is reported, each named; a malformed flag is named by the flag
// package.
func parseSettings(args []string, lookupEnv func(string) (string, bool), out io.Writer) (s *Settings, printEnv bool, err error) {
	s = &Settings{}
	table := settingsTable(s)
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { writeUsage(out, table) }
	fs.BoolVar(&printEnv, "print-env", false, "")
	warnings, errs := bindTable(fs, table, lookupEnv)
	for name, why := range ignoredRefEnv {
		if v, ok := lookupEnv(name); ok && v != "" {
			warnings = append(warnings, fmt.Sprintf("%s is a reference relay setting with no meaning here (%s); ignored", name, why))
		}
	}
	sort.Strings(warnings)
	s.Warnings = warnings
	if err := parseFlags(fs, args, errs); err != nil {
		return nil, false, err
	}
	return s, printEnv, nil
}

// bindTable gives each setting of table its value from the environment
// (its own variable, else its reference-relay aliases, else the default)
// and registers its flag on fs. It returns the warnings (an alias that
// disagrees with our name) and one error per malformed variable; a
// malformed one leaves the default in place so its flag can still set it.
func bindTable(fs *flag.FlagSet, table []setting, lookupEnv func(string) (string, bool)) (warnings []string, errs []error) {
	for i := range table {
		e := &table[i]
		raw, from := e.def, e.env
		own, ownSet := lookupEnv(e.env)
		ownSet = ownSet && (own != "" || e.emptyIsValue)
		if ownSet {
			raw = own
		}
		for _, a := range e.aliases {
			v, ok := lookupEnv(a.env)
			if !ok || v == "" {
				continue
			}
			if a.conv != nil {
				c, err := a.conv(v)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s=%q (the reference relay's name for %s): %w", a.env, v, e.env, err))
					continue
				}
				v = c
			}
			if ownSet {
				if v != own {
					warnings = append(warnings, fmt.Sprintf("%s and %s are both set and disagree (%q, %q): %s wins",
						e.env, a.env, own, v, e.env))
				}
				continue
			}
			raw, from, ownSet, own = v, a.env, true, v
		}
		if err := e.value.set(raw); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", from, raw, err))
			raw = e.def
			_ = e.value.set(raw)
		}
		fs.Var(&flagValue{s: e, raw: raw}, e.flag, e.help)
	}
	return warnings, errs
}

// parseFlags parses args on top of the environment's values and reports,
// in this order, a flag error, stray arguments, then the environment's
// errors.
func parseFlags(fs *flag.FlagSet, args []string, envErrs []error) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (every setting is a --flag)", fs.Args())
	}
	return errors.Join(envErrs...)
}

// flagValue is the flag.Value of one setting.
type flagValue struct {
	s   *setting
	raw string // the text in effect
}

func (f *flagValue) String() string {
	if f == nil {
		return ""
	}
	return f.raw
}

func (f *flagValue) Set(v string) error {
	if v == "" && !f.s.emptyIsValue {
		v = f.s.def
	}
	if err := f.s.value.set(v); err != nil {
		return err
	}
	f.raw = v
	return nil
}

// IsBoolFlag lets a bool setting be given as a bare --flag.
func (f *flagValue) IsBoolFlag() bool { return f.s.value.kind == "bool" }

// writeUsage prints `relay serve -h` from the table.
func writeUsage(w io.Writer, table []setting) {
	writeTableUsage(w, `usage: relay serve [flags]

Runs the relay. Each flag also reads the RELAY_* variable shown with it; the
flag wins over the variable. An absent or empty variable, or a flag given
"", means the default (for --seed-hosts-url, empty turns bootstrapping off).
Sizes take B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers
of 1000); durations take Go syntax (90s, 5m, 72h).

  --print-env
        print deploy/relay.env (every variable with its default) and exit
`, table)
}

// writeTableUsage prints intro, then each setting of table under its group
// heading: flag, kind, variable, default and the wrapped help.
func writeTableUsage(w io.Writer, intro string, table []setting) {
	fmt.Fprint(w, intro)
	group := ""
	for _, e := range table {
		if e.group != group {
			group = e.group
			fmt.Fprintf(w, "\n%s:\n", group)
		}
		kind := e.value.kind
		if e.value.choices != nil {
			kind = strings.Join(e.value.choices, "|")
		}
		if kind == "bool" {
			fmt.Fprintf(w, "  --%s[=true|false]  %s, default %q\n", e.flag, e.env, e.def)
		} else {
			fmt.Fprintf(w, "  --%s %s  %s, default %q\n", e.flag, kind, e.env, e.def)
		}
		for _, line := range wrap(e.help, 72) {
			fmt.Fprintf(w, "        %s\n", line)
		}
	}
}

// envFileHeader opens deploy/relay.env.
const envFileHeader = `# Settings of the relay, read by systemd (EnvironmentFile= in relay.service)
# and installed as /etc/relay/relay.env (mode 0600, root:root) by install.sh.
# Generated from the settings table (cmd/relay/settings.go) by
# ` + "`relay serve --print-env`" + `; in the repository, change the table and regenerate.
# ` + "`relay serve -h`" + ` lists the flag each variable sets. Values shown are the
# defaults. An absent or empty variable means its default, except
# RELAY_SEED_HOSTS_URL, where empty turns bootstrapping off. Sizes take B, KiB,
# MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000);
# durations take Go syntax (90s, 5m, 72h).
#
# The reference relay's (indigo cmd/relay) variable names are accepted too:
# each is listed under the setting it means, and serve warns when one and our
# name are both set and disagree, or when a reference setting with no meaning
# here (DATABASE_URL, RELAY_PERSIST_DIR, ...) is set. Like the reference,
# relay serve also reads a .env file in its working directory (the real
# environment wins over it).
#
# MUST MATCH relay.service: RELAY_MEMORY_BUDGET equals the unit's MemoryHigh,
# and MemoryMax stays about 12.5 % above it. The caches and buffers below
# default to shares of RELAY_MEMORY_BUDGET (0); an explicit size is carved out
# of the same budget, so keep their sum well below it.
`

// writeEnvFile renders deploy/relay.env from the table.
func writeEnvFile(w io.Writer, table []setting) error {
	return renderEnv(w, envFileHeader, table, func(e *setting) (string, string) {
		if e.deploy == "" {
			return e.def, ""
		}
		return e.deploy, fmt.Sprintf(" (relay serve's own default: %s.)", e.def)
	})
}

// renderEnv writes an environment file: header, then each setting under
// its group heading with its help wrapped as comments. deployed gives the
// value the file carries and a note appended to the help.
func renderEnv(w io.Writer, header string, table []setting, deployed func(*setting) (val, note string)) error {
	var b strings.Builder
	b.WriteString(header)
	group := ""
	for i := range table {
		e := &table[i]
		if e.group != group {
			group = e.group
			head := "# --- " + group + " "
			b.WriteString("\n" + head + strings.Repeat("-", max(77-len(head), 3)) + "\n\n")
		}
		help := e.help
		if e.value.choices != nil {
			help += " One of: " + strings.Join(e.value.choices, ", ") + "."
		}
		val, note := deployed(e)
		help += note
		if len(e.aliases) > 0 {
			names := make([]string, len(e.aliases))
			for i, a := range e.aliases {
				names[i] = a.env
			}
			help += " The reference relay's name, read when " + e.env + " is unset: " + strings.Join(names, ", ") + "."
		}
		for _, line := range wrap(help, 76) {
			b.WriteString("# " + line + "\n")
		}
		b.WriteString(e.env + "=" + val + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// wrap splits text into lines of at most width bytes at spaces (a longer
// word gets a line of its own).
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// formatDuration prints d as an operator writes it: 72h, 10s, 1ms.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// The value kinds. Each setter parses the whole text and leaves the field
// alone on error; the caller names the setting in the error.

func stringValue(p *string) value {
	return value{kind: "string", set: func(v string) error { *p = v; return nil }}
}

// listValue takes comma-separated items; blanks around and between them
// are dropped.
func prefixListValue(p *[]netip.Prefix) value {
	return value{kind: "list", set: func(v string) error {
		var out []netip.Prefix
		for _, it := range strings.Split(v, ",") {
			if it = strings.TrimSpace(it); it == "" {
				continue
			}
			pr, err := netip.ParsePrefix(it)
			if err != nil {
				a, aerr := netip.ParseAddr(it)
				if aerr != nil {
					return fmt.Errorf("want networks such as 127.0.0.1/32,::1/128: %q", it)
				}
				pr = netip.PrefixFrom(a, a.BitLen())
			}
			out = append(out, pr.Masked())
		}
		*p = out
		return nil
	}}
}

func listValue(p *[]string) value {
	return value{kind: "list", set: func(v string) error {
		var items []string
		for _, it := range strings.Split(v, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
		*p = items
		return nil
	}}
}

func boolValue(p *bool) value {
	return value{kind: "bool", set: func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("want true or false")
		}
		*p = b
		return nil
	}}
}

func durationValue(p *time.Duration) value {
	return value{kind: "duration", set: func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return errors.New("want a duration such as 90s, 5m or 72h, not negative")
		}
		*p = d
		return nil
	}}
}

// hedgeValue is durationValue plus "off", stored as a negative duration
// (identity.Config's "hedging off").
func hedgeValue(p *time.Duration) value {
	v := durationValue(p)
	set := v.set
	v.set = func(s string) error {
		if s == "off" {
			*p = -1
			return nil
		}
		return set(s)
	}
	return v
}

// bytesValue takes a size in memory.ParseBytes's syntax.
func bytesValue[T ~int | ~int64 | ~uint64](p *T) value {
	return value{kind: "bytes", set: func(v string) error {
		n, err := memory.ParseBytes(v)
		switch {
		case errors.Is(err, memory.ErrSizeUnit):
			return errors.New("want a byte size such as 512MiB or 4GiB: unknown unit")
		case errors.Is(err, memory.ErrSizeRange):
			return errors.New("want a byte size such as 512MiB or 4GiB: too large")
		case err != nil:
			return errors.New("want a byte size such as 512MiB or 4GiB")
		}
		*p = T(n)
		return nil
	}}
}

// intValue takes a decimal integer of at least least.
func intValue[T ~int | ~int64 | ~uint64](p *T, least int64) value {
	return value{kind: "int", set: func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < least {
			return fmt.Errorf("want an integer of at least %d", least)
		}
		*p = T(n)
		return nil
	}}
}

// floatValue takes a number of at least 0.
func floatValue(p *float64) value {
	return value{kind: "float", set: func(v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return errors.New("want a number of at least 0")
		}
		*p = f
		return nil
	}}
}

// choice is one word an enum accepts and the value it stands for.
type choice[T any] struct {
	word string
	v    T
}

// enumValue takes one of the choices' words, exactly.
func enumValue[T any](p *T, choices ...choice[T]) value {
	words := make([]string, len(choices))
	for i, c := range choices {
		words[i] = c.word
	}
	return value{kind: "enum", choices: words, set: func(v string) error {
		for _, c := range choices {
			if v == c.word {
				*p = c.v
				return nil
			}
		}
		return fmt.Errorf("want %s or %s", strings.Join(words[:len(words)-1], ", "), words[len(words)-1])
	}}
}
