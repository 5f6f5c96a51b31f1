// Package replay serves a capture (bench/capture) as the set of hosts it
// was recorded from, so a relay can be benchmarked and tested against real
// traffic without any atproto software.
//
// Each source host of the capture gets its own HTTP server on a
// 127.0.0.1 port and announces itself as localhost:PORT, or, with
// Options.TLS, serves https:// and wss:// with a test CA's certificate as
// pds-N.localhost:PORT (names under .localhost are loopback, RFC 6761; a
// relay's development switch dials them on 127.0.0.1 over TLS once it
// trusts the CA). It serves
//
//   - /xrpc/com.atproto.sync.subscribeRepos?cursor=N, with the cursor
//     semantics of spec §9.3: no cursor means live from now (only frames
//     released after the connection); cursor N replays the released frames
//     with seq > N and then continues live; a cursor above the latest
//     released seq gets the error frame {op:-1}{error:"FutureCursor"} and a
//     close; a negative or non-integer cursor gets HTTP 400. After the last
//     frame the connection stays open and answers pings.
//   - /xrpc/com.atproto.server.describeServer: {"did", "availableUserDomains": []}.
//   - /xrpc/_health: {"status":"ok"}.
//
// # Pacing and the start gate
//
// Frames are "released" to a host's subscribers by its head counter. With
// AsFastAsPossible every frame is released at Start; with Scaled each frame
// is released at its recorded receive-time offset (from the earliest frame
// of the whole capture) divided by Options.Speed, by one pacer goroutine
// per host that exits when its host is fully released. Options.Gated
// holds the head at zero until Start, so a harness connects the relay
// first (live, without cursor) and then releases the traffic.
//
// # Memory and goroutines
//
// New splits the capture by host into zstd blocks of about BlockBytes raw
// bytes each (3.8× smaller than raw on realpds-2, so a 1M-frame ~3 GB
// capture holds ~800 MB; Host.HeldBytes reports it),
// plus a seq and a time per frame (16 bytes). The capture file is read once.
// Each connection has one writer goroutine that decompresses one block at
// a time into its own buffer and writes the frames from it unchanged (no
// re-encoding, no per-frame allocation), and one reader goroutine that
// answers pings; a connection with nothing to send waits on a channel and
// costs nothing else.
//
// Frames without a seq (#info, error frames) and frames whose seq does not
// rise above their host's previous one are not served: cursors need
// strictly increasing seqs. Replayer.Skipped counts them.
//
// Fleet (Start, StartFromShared) adds a fake PLC (bench/plc) loaded from
// the capture's identity snapshot, each #atproto_pds endpoint that names a
// source host rewritten to its replay host's URL (Host.URL).
package replay
