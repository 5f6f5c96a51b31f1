// Package harness measures a relay by running a capture through it: it
// replays the capture as its original hosts (bench/replay) with a fake PLC,
// points a relay at them, and reads the relay's firehose with several
// consumers while sampling the relay's Prometheus metrics.
//
// # A run
//
// Prepare loads the capture, starts the replay hosts gated (nothing is
// sent yet) and the fake PLC, so a caller can start the relay under test
// with the PLC URL (Harness.PLCURL) and the "allow insecure hosts" dev
// setting, in process or as a child. Harness.Run then:
//
//  1. dials Config.Consumers subscribeRepos connections to the relay,
//     without a cursor (live from now);
//  2. sends requestCrawl {"hostname": "localhost:PORT"} for each replay
//     host, unless Relay.NoCrawl, and waits until the relay holds an open
//     subscription to every host;
//  3. opens the gate and samples every Config.SampleInterval: ingest and
//     delivery rates, relay RSS, Go heap in use and released, GC CPU
//     fraction, CPU, allocations per event, drop counters, consumer lag;
//  4. stops once every consumer has the expected events (by default every
//     frame the replay hosts serve), at Config.Duration, at Config.Timeout
//     or when ctx ends, and returns a Report (JSON with the per-sample time
//     series, and a text summary).
//
// # TLS and a realistic PLC
//
// Config.TLS (relay bench --tls) makes the replay hosts serve wss:// and
// https:// as pds-N.localhost:PORT with a test CA generated for the run
// (bench/testca), so TLS handshakes and record decryption are part of
// the measured path; the relay under test must allow development hosts
// (its dialer maps .localhost names to loopback) and trust the CA file
// Harness.CAFile, which --relay-cmd receives as {ca}. Config.PLC (relay
// bench --plc-latency P50,P99 --plc-errors P --plc-timeouts P --plc-rate
// N) makes the fake PLC slow, failing and rate-limited like the real one
// (plc.Behaviour); Report.PLCCounters says what it answered.
//
// # Checks
//
// Each consumer checks that relay seqs rise by exactly one (gaps, and seqs
// that do not rise, are failures), that each DID's commits carry rising
// revs (a #sync may reset the baseline, spec §10.2), and that every
// message decodes; an error frame or an early close is a failure too.
//
// # Latency
//
// bench/replay has no send hook, and proxying its frames would add a hop
// and a parse to the measured path, so the harness recomputes the replay's
// own pacing from the capture: a commit's send time is the gate release
// plus its scheduled offset (see schedule). Under as-fast-as-possible
// pacing every frame is released at the gate, so latency then runs from
// the gate and includes queueing in the replay hosts and the relay.
// Consumers look the commit up by (did, rev) and record into a fixed-size
// log-linear histogram (6% buckets): no allocation per event.
//
// That latency includes the load generator: on a shared machine, its
// hosts send late and its consumers read late when it waits for a CPU.
// The relay's own share comes from the relay's histograms of the time
// from a frame's arrival to its event's publication
// (Config.PipelineMetrics): the harness keeps the scrape taken when the
// warm-up ends and reports what each histogram gained since
// (Report.RelayShare, quantiles as bucket upper bounds).
//
// # Memory
//
// Every sample reads the relay's RSS, Go heap in use, stacks, the
// binary's resident pages and its off-heap gauges (Config.OffHeapMetrics);
// Report.Memory gives RSS ÷ heap in use and RSS ÷ all of it after the
// warm-up. The first counts memory the relay uses outside the Go heap
// (Pebble's cache under cgo) as overhead; the second leaves only what the
// process holds beyond its use.
//
// # Charts
//
// WriteMemoryPNG draws RSS, heap in use and heap released over time for
// one or more reports, with the standard library only (image/png and a
// built-in 5×7 bitmap font).
package harness
