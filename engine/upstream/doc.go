// Package upstream keeps a WebSocket subscription open to the
// com.atproto.sync.subscribeRepos firehose of each of thousands of PDS hosts
// and hands every complete binary message to the engine. It owns sockets,
// framing, limits, reconnects and liveness; it does not decode CBOR beyond
// one look at each message's header for op -1: an error frame reaches the
// Sink like any other message, then ends the stream (see Hostile hosts).
//
// # Goroutines
//
// A Loop runs a fixed set of goroutines, whatever the number of hosts: one
// epoll poller, Config.Readers readers, Config.MaxConcurrentDials dialers
// (they are the dial semaphore) and one clock. An idle host holds no
// goroutine and no read buffer: only its socket, a small parse state and its
// epoll registration.
//
// # Readiness and ownership
//
// Each connection is registered level-triggered with EPOLLONESHOT. The
// poller never reads: a report moves the host from armed to reading and
// queues it; one reader then owns the connection exclusively. The reader
// reads with read(2) on the nonblocking descriptor into its own scratch
// buffer (large payloads go straight into the message buffer), parses whole
// frames, and re-arms only after a read returned EAGAIN. Because the
// descriptor is level-triggered, bytes that arrive between that EAGAIN and
// the re-arm are reported at once, so none are stranded. EPOLLRDHUP, HUP and
// ERR simply wake the reader, whose read then returns EOF or the error.
//
// A host's Host.state names its owner: waiting (the clock), dial-queued or
// dialing (a dialer), armed (nobody: epoll), reading (a reader), parked
// (nobody: paused by the Sink), starved (nobody: waiting for buffer
// budget), closed. Other goroutines never touch the
// connection; Remove, Reconnect, Resume and the clock set request bits and,
// if nobody owns the host, "kick" it to a reader, which acts on them. Only
// the owner writes (pong, ping, close) and closes, so a descriptor is never
// read after it was closed and reused.
//
// # Frames
//
// A frame's header (up to 14 bytes) is kept across turns; once it is
// complete and passes gobwas/ws CheckHeader (client side: unmasked, no RSV,
// proper fragmentation, control frames final and ≤ 125 bytes) and the size
// limit, a pooled buffer receives the payload and continuation frames extend
// it. The buffer is not sized from the declared length, which is only a
// claim: it starts at min(length, 64 KiB) and moves to bigger pooled buffers
// (at least doubling) as bytes arrive, so a partial message holds at most
// 64 KiB or a few times what it received; the buffers of all messages in
// flight together are bounded too (Buffer budget, below). Ping is answered
// with pong, close with close then a reconnect, text frames are a protocol
// error. A message
// over Config.MaxFrameBytes (5,000,000 by default, spec §9.2) drops the
// connection with reason "oversize" and reconnects with backoff.
//
// # Buffer budget
//
// Config.MaxBufferedBytes bounds the buffers of every message in flight,
// from its first byte to its delivery, at their capacity: the per-message
// limit alone lets N hosts hold N × MaxFrameBytes. A message's first buffer
// and, once it outgrows that, a reservation for its whole frame's buffer
// class are taken from it; a host refused waits (starved) with its socket
// unread until released bytes are granted to it, in order, and a reader
// wakes it. First buffers may use only half the bound (less a largest
// message, if that is smaller), so growing messages always find room once
// those ahead of them finish and never wait for each other for good; a
// starved host's message clock keeps running, so hosts that trickle a
// message to keep its bytes are dropped as usual. See memBudget. Bytes read
// past a paused frame are not message buffers: Config.MaxPendingBytes
// bounds them (Back-pressure), and Cost of a host sums up the rest.
//
// # Back-pressure
//
// The Sink owns each Frame until it calls Release; Host.Outstanding and the
// relay_upstream_outstanding_bytes gauge count what is held. When the Sink
// returns false the host is parked: its socket is not re-armed, so the
// kernel's receive window and then TCP flow control push back on the PDS,
// until Loop.Resume. Bytes already read past the paused frame (or past the
// point where the buffer budget starved the host) wait in the host's pending
// buffer. Bytes read cannot be refused, so Config.MaxPendingBytes bounds
// these buffers softly: while all hosts' pending buffers together hold that
// much (relay_upstream_pending_bytes, at capacity), readers read at most
// smallReadBytes (4 KiB) at a time instead of their whole scratch buffer,
// so a host paused then keeps at most a 4 KiB buffer. Pending bytes stay
// under MaxPendingBytes + Readers × ReadBufferBytes (readers past the check
// together) + hosts × 4 KiB. Under the bound reads are unchanged, so the
// normal case pays no extra read(2). Readers give up a host after Config.TurnBytes and requeue
// it, so one busy host cannot starve the others.
//
// # TLS
//
// crypto/tls sits above the socket and may hold decrypted or raw record
// bytes, which epoll cannot see. The design keeps it from stranding data:
// the TLS client runs over recordConn over nbConn, whose Read returns a
// temporary net.Error instead of blocking. crypto/tls does not poison a
// connection on temporary errors, and tls.Conn.Read only reaches the
// socket after its plaintext is consumed and no complete record is
// buffered; recordConn, which may hold the next record's 5-byte header,
// reads the socket only once it handed that out. So "read until the TLS
// layer reports would-block, then re-arm" implies nothing readable remains
// above the socket. Readers yielding on budget requeue the host instead of
// re-arming (the socket may be empty while crypto/tls still holds records),
// and a new connection's first turn runs before it is armed, for the same
// reason and for frames that arrived with the 101 response. The cost: each
// TLS connection keeps what crypto/tls holds, which this package cannot
// release: a record buffer of one record (about 17 KiB: recordConn never
// returns bytes past a record's end, so the buffer is empty at each
// record's start and never grows to hold one behind part of another), the
// server's certificate chain about four times over (copies and parsed
// forms), a handshake buffer, cipher state. The chain is the server's
// choice, so the handshake may read at most maxTLSHandshakeBytes (10 KiB)
// from it; a larger one fails the dial with reason "handshake_too_large"
// (ErrTLSHandshakeTooLarge). What escapes the bound: TLS 1.3
// post-handshake messages (session tickets, up to 64 KiB) are encrypted
// like data, and crypto/tls keeps its handshake buffer as large as the
// largest one it assembled.
//
// # Cost of a host
//
// What one connected host can make the loop hold, beyond the bounds above
// (MaxBufferedBytes for message buffers, MaxPendingBytes for pending
// buffers larger than a small read) and the kernel's socket buffers, is at
// most HostBytesTLS (85 KiB; about 38 KiB with a public CA's chain) for
// wss:// and HostBytesPlain (11 KiB) for ws://, measured by TestHostBytes
// (hostbytes.go has the figures and what they are made of). A host without
// a connection is its Host value only, under 1 KiB; dials in flight are
// bounded by MaxConcurrentDials. So, besides its fixed goroutines and
// their scratch buffers, the loop holds at most MaxBufferedBytes +
// MaxPendingBytes + Readers × ReadBufferBytes + Hosts() × HostBytesTLS,
// and a relay keeps Hosts() within its memory share by that sum.
//
// # Dialing
//
// wss:// on 443 by default. Config.AllowInsecureHosts (development only)
// permits ws://, explicit ports such as localhost:PORT, and non-public
// addresses, and connects names under .localhost to 127.0.0.1
// (DevDialAddr), so test fleets can serve wss:// as pds-N.localhost:PORT
// with a test CA in Config.TLSConfig; otherwise a net.Dialer Control hook refuses loopback, private,
// link-local, unspecified, multicast and reserved addresses on the address
// actually dialed (ErrForbiddenAddress, reason "dial"). TCP connect has
// Config.DialTimeout (5 s), TLS plus upgrade Config.HandshakeTimeout, and
// the response head is bounded by Config.MaxHandshakeBytes (16 KiB) and
// Config.MaxHandshakeHeaders (100): gobwas/ws would otherwise grow a header
// line without limit (reason "handshake_too_large"). The request carries
// our User-Agent and cursor=<seq> from Config.Cursor (or from Reconnect). A non-101 answer is a *StatusError; a Server header
// containing "atproto-relay" is ErrRelayLoop (reason "relay_loop", and the
// host goes straight to the slow schedule; the engine may Remove it).
// Failures back off exponentially from BackoffMin to BackoffMax (30 s) with
// jitter; after SlowAfterFailures in a row the host is retried every
// SlowRetry (15 min ± 1/3), forever. A connection that delivered a message
// resets the count, unless it ended for misbehaving (below).
//
// # Liveness
//
// The clock scans hosts every Tick. A connection that read nothing for
// IdlePing gets a ping; if nothing at all is read within PongTimeout after
// it, the connection is dropped (reason "timeout") and redialed.
//
// # Hostile hosts
//
// Anyone can get a host added, so every resource a host can make us spend
// is bounded, and abuse backs off like a failed dial:
//
//   - Handshake: the TLS handshake and the response head are bounded
//     (above).
//   - Paused hosts: bytes read past a pause are pending buffers, bounded
//     by Config.MaxPendingBytes and 4 KiB per host (Back-pressure).
//   - Partial messages: buffers grow with the bytes that arrive (above),
//     all hosts' together stay within Config.MaxBufferedBytes, and a
//     message must complete within Config.MessageTimeout (1 min) of its
//     first byte (reason "message_timeout"): bytes prove a peer alive, not
//     making progress. Readers check after every read, the clock catches a
//     host gone silent or starved mid-message; time the Sink keeps a host
//     paused does not count.
//   - Control frames: we write pong, ping and close without ever blocking
//     (nbConn keeps at most 2 KiB the socket could not take, and a peer
//     that leaves it unread for Config.WriteTimeout is dropped, reason
//     "timeout"). Pings coalesce: one pong, for the newest ping, is sent at
//     the end of the reader's turn. More than Config.MaxPingsPerSecond (10,
//     bursts of twice that) drops the connection (reason "ping_flood").
//   - Error frames (header op -1) end the stream after reaching the Sink
//     (reason "error_frame"); they do not count as a delivery, so a host
//     answering every connection with one (FutureCursor) backs off
//     exponentially. A Reconnect the Sink asks for meanwhile keeps its
//     cursor but waits out the backoff.
//   - Penalties: a connection ended for "protocol", "oversize",
//     "message_timeout", "ping_flood" or "error_frame" counts as one more
//     failed dial even if it delivered messages first.
//   - Logs: this package logs nothing; text a host controls (error and
//     #info names, handshake and TLS errors) reaches the engine, which logs
//     it through LogString (128 bytes, valid UTF-8) at most once per host
//     per Config.LogInterval (Host.LogAllowed). Errors given to
//     Config.OnDisconnect are already cut to that length.
//
// # Metrics
//
// In Config.Metrics: relay_upstream_frames_total, relay_upstream_bytes_total,
// relay_upstream_dials_total, relay_upstream_errors_total{reason} (one series
// per Reason, created at zero: the attacks above count under
// handshake_too_large, message_timeout, ping_flood and error_frame),
// relay_upstream_log_suppressed_total (lines Host.LogAllowed refused),
// relay_upstream_starved_total (turns ended by the buffer budget), and the
// gauges relay_upstream_connections, relay_upstream_hosts,
// relay_upstream_outstanding_bytes, relay_upstream_buffered_bytes and
// relay_upstream_buffer_limit_bytes (the buffer budget's use and bound),
// relay_upstream_pending_bytes (pending buffers, Back-pressure),
// relay_upstream_starved_hosts.
//
// Linux only (epoll).
package upstream
