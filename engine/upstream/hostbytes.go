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
//	measured, chain filling the handshake    65.0 KiB  -
//	measured, a public CA's 2.1 KB chain     37.5 KiB  -
//	measured (no TLS)                        -          5.3 KiB
//	of which pending buffer (4 KiB class)      4 KiB    4 KiB
//	not exercised: owed control bytes         +4 KiB   +4 KiB
//	constant                                   85 KiB   11 KiB
//
// The TLS figure at the bound is, by the sizes involved: crypto/tls's
// record buffer (about 19 KiB: one record, as recordConn reads a record at
// a time, in a buffer doubled once from the size of the largest handshake
// record), its handshake buffer (up to 10 KiB), the copy of the
// certificate message the parsed certificates point into (8 KiB), its
// certificate cache's two copies of each certificate as map key and
// cleanup argument (16 KiB), the parsed certificates, AES-GCM state and
// tls.Conn with its Config (about 5 KiB), then what a ws:// host costs:
// Host, conn with its frame reader, nbConn, recordConn, net.TCPConn and
// the pending buffer. Before recordConn and the 10 KiB handshake bound the
// same test measured 109.6 KiB (58.0 KiB with the 2.1 KB chain): the
// record buffer grew twice, to 40 KiB, and the chain could be 14 KiB.
// Every part has a bound the host cannot raise: the chain
// maxTLSHandshakeBytes, records TLS's 16 KiB plus expansion (a record
// larger than the test's, up to crypto/tls's 18 KiB limit, fits the
// doubled buffer or adds at most a size class), pending smallReadBytes.
// One exception the loop cannot see:
// a TLS 1.3 server may send post-handshake messages (session tickets) of
// up to 64 KiB, encrypted like data, which crypto/tls assembles in its
// handshake buffer and keeps that large.
const (
	// HostBytesTLS is what one connected wss:// host costs at most: the
	// measured 65.0 KiB with 25 % margin, plus hostOwedBytes.
	HostBytesTLS = 85 << 10
	// HostBytesPlain is what one connected ws:// host (development only)
	// costs at most: the measured 5.3 KiB with 33 % margin, plus
	// hostOwedBytes.
	HostBytesPlain = 11 << 10
)

// hostOwedBytes is the part of HostBytes the measurement does not
// exercise: nbConn.owed, control frames the socket could not take yet,
// keeps its capacity once grown, up to maxOwedBytes rounded up by append.
const hostOwedBytes = 2 * maxOwedBytes
