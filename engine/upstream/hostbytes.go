package upstream

// What one connected host can make the loop hold at most, beyond its
// message buffers (Config.MaxBufferedBytes bounds those of all hosts
// together), its share of the pending buffers above the small-read class
// (Config.MaxPendingBytes), and the kernel's socket buffers. A relay that
// gives the upstream loop a memory share can admit share / HostBytesTLS
// hosts (see doc.go, Cost of a host).
//
// Measured by TestHostBytes with go1.26 on linux/amd64: 200 hosts, each
// sending a message of three full 16 KiB TLS records, so crypto/tls's
// record buffer reaches its largest, then pausing with a 4 KiB pending
// buffer; live heap after GC, less a baseline with the loop running.
//
//	                                        wss://     ws://
//	measured, chain filling the handshake   109.6 KiB  -
//	measured, a public CA's 2.1 KB chain     58.0 KiB  -
//	measured (no TLS)                        -          5.3 KiB
//	of which pending buffer (4 KiB class)      4 KiB    4 KiB
//	not exercised: owed control bytes         +4 KiB   +4 KiB
//	constant                                  140 KiB   11 KiB
//
// The TLS figure at the bound breaks down as crypto/tls's record buffer
// (40 KiB: a bytes.Buffer that grew twice to hold a record behind a
// partial one), its handshake buffer (16 KiB), the copy of the
// certificate message the parsed certificates point into (16 KiB), its
// certificate cache's two copies of each certificate as map key and
// cleanup argument (27 KiB), the parsed certificates, AES-GCM state and
// tls.Conn with its Config (about 5 KiB), then what a ws:// host costs:
// Host, conn with its frame reader, nbConn, net.TCPConn and the pending
// buffer. Every part has a bound the host cannot raise: the chain
// maxTLSHandshakeBytes, records TLS's 16 KiB, pending smallReadBytes.
// One exception the loop cannot see:
// a TLS 1.3 server may send post-handshake messages (session tickets) of
// up to 64 KiB, encrypted like data, which crypto/tls assembles in its
// handshake buffer and keeps that large.
const (
	// HostBytesTLS is what one connected wss:// host costs at most: the
	// measured 109.6 KiB with 24 % margin, plus hostOwedBytes.
	HostBytesTLS = 140 << 10
	// HostBytesPlain is what one connected ws:// host (development only)
	// costs at most: the measured 5.3 KiB with 33 % margin, plus
	// hostOwedBytes.
	HostBytesPlain = 11 << 10
)

// hostOwedBytes is the part of HostBytes the measurement does not
// exercise: nbConn.owed, control frames the socket could not take yet,
// keeps its capacity once grown, up to maxOwedBytes rounded up by append.
const hostOwedBytes = 2 * maxOwedBytes
