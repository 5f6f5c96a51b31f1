// Package deploy holds the files that run the relay on a dedicated Debian
// server, and tests that keep them consistent with each other and with the
// code. It has no Go API.
//
//	relay.service           systemd unit: user relay, state in /var/lib/relay,
//	                        settings from /etc/relay/relay.env, memory limits, hardening
//	relay.env               every RELAY_* setting with its default and meaning
//	install.sh              idempotent install: user, binary, unit, env file, enable
//	                        (`make install` runs it on bin/relay)
//	grafana-dashboard.json  Grafana dashboard: ingest, validation, sequencer and
//	                        storage, consumers, memory, pools
//	RUNBOOK.md              install, first start, upgrade, backup, capture and
//	                        replay, profiling, the dashboard, alerts
//
// # Tests
//
// deploy_test.go checks the unit's syntax and settings, relay.env against
// the defaults, the memory rule below and install.sh. dashboard_test.go
// checks every Grafana expression names a metric the relay binary exports,
// filters by $instance and groups histogram buckets by the right label;
// the exported set comes from a source scan of the packages cmd/relay links
// (exported_test.go says why and how). The same set checks the metric
// names RUNBOOK.md mentions.
//
// # Settings
//
// Each variable of relay.env, grouped as in the file:
//
//	RELAY_API_LISTEN             public API and firehose address (:2470)
//	RELAY_METRICS_LISTEN         admin API, /metrics and pprof address (:2471)
//	RELAY_DATA_DIR               Pebble database directory (/var/lib/relay)
//	RELAY_REPLAY_WINDOW          how long events stay replayable (72h)
//	RELAY_DISK_BUDGET            event log size cap, 0 = off
//	RELAY_SYNC_POLICY            fsync per write batch (every-batch) or none
//	RELAY_SYNC_INTERVAL          least time between two fsyncs (1ms)
//	RELAY_INITIAL_SEQ            first sequence number of a new database (1)
//	RELAY_PLC_HOST               PLC directory (https://plc.directory)
//	RELAY_DEFAULT_ACCOUNT_LIMIT  accounts a new host may serve (100)
//	RELAY_TRUSTED_DOMAINS        hosts exempt from that limit (*.host.bsky.network)
//	RELAY_NEW_HOSTS_PER_DAY      requestCrawl admissions per day (50)
//	RELAY_EVENTS_PER_SECOND      untrusted host event rate, + account limit/1000 (50)
//	RELAY_TRUSTED_EVENTS_PER_SECOND trusted host event rate (5000)
//	RELAY_SEED_HOSTS_URL         relay whose host list seeds a new database (https://bsky.network)
//	RELAY_ALLOW_INSECURE_HOSTS   allow ws:// and http:// hosts (false)
//	RELAY_VALIDATION             strict or lenient commit validation
//	RELAY_WORKERS                event workers, 0 = GOMAXPROCS
//	RELAY_MEMORY_BUDGET          process memory (4GiB); equals the unit's MemoryHigh
//	RELAY_GOGC                   Go GC percentage (100)
//	RELAY_TRIM_INTERVAL          least time between idle-heap trims (10s)
//	RELAY_TRIM                   run the FreeOSMemory heap trimmer (true)
//	RELAY_IDENTITY_CACHE_BUDGET  identity cache size (0 = 1/8 of the budget)
//	RELAY_FIREHOSE_BUFFER        recent frames in memory for consumers (0 = 1/4 of the budget)
//	RELAY_PEBBLE_CACHE           Pebble block cache, off heap (0 = 1/16 of the budget)
//	RELAY_PEBBLE_MEMTABLE        one Pebble memtable, off heap, up to 4 (0 = 1/128 of the budget)
//	RELAY_ADMIN_PASSWORD         admin bearer token, required
//	RELAY_LOG_LEVEL              debug, info, warn or error (info)
//	RELAY_LOG_FORMAT             json or text (json)
//
// # Memory
//
// The unit's MemoryHigh equals RELAY_MEMORY_BUDGET; MemoryMax is 12.5 %
// above it as the hard stop. The relay (engine/memory) sets GOMEMLIMIT to
// 90 % of the budget minus Pebble's off-heap cache and memtables, so the Go
// heap is collected harder well before the kernel starts reclaiming at
// MemoryHigh. The caches and buffers default to shares of the budget
// (engine/memory.SharesOf); explicit sizes must fit in it. The test in this
// package checks the unit, the budget and the explicit sizes agree.
package deploy
