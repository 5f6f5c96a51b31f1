package upstream

import "encoding/binary"

// tlsRecordHeaderBytes is the size of a TLS record header: content type
// (1 byte), legacy version (2), length of the fragment that follows (2,
// big-endian). RFC 8446 §5.1, RFC 5246 §6.2.
const tlsRecordHeaderBytes = 5

// recordConn is what tls.Client reads through: the nbConn, except that no
// Read returns a byte past the end of the TLS record it is in. It hands out
// a record's header, then at most the rest of that record's fragment, then
// the next header.
//
// Why: crypto/tls reads into its record buffer (a bytes.Buffer kept for the
// connection's life) with all the room that buffer has. A read that ends
// inside the next record leaves its start behind the current one, and the
// buffer then grows to hold a whole record behind that prefix: it doubled
// twice, to about 40 KiB per connection, once a full record arrived that
// way. Read a record at a time, the buffer is empty at every record's
// start (bytes.Buffer then rewinds instead of growing) and stays at one
// record plus crypto/tls's 512 bytes of slack, about 17 KiB.
//
// Not to pay a read(2) for every header, the read that finishes a fragment
// asks for the next header's 5 bytes too and holds what it got of them
// (hdr) for the next Read: while records stream in, one read(2) a record,
// where a read could bring two records before; a host sending a record at
// a time costs what it did. crypto/tls allocates 24 bytes each time it
// must read for a record, now twice a record (header, fragment). It never
// holds more than that header, and it reads the socket only when it holds
// nothing crypto/tls has not seen, so errWouldBlock, which it passes
// through like every error, still means that recordConn and the socket are
// both empty (see readFailure). It sees every byte the server sends, so
// where it thinks a record ends is where crypto/tls does; a length
// crypto/tls refuses (over 16 KiB plus expansion) fails the connection
// before the fragment is read.
//
// Owned like its nbConn: by the goroutine owning the host's connection.
type recordConn struct {
	*nbConn

	hdr      [tlsRecordHeaderBytes]byte // the next header: hdrN bytes read, hdrOff of them handed out
	hdrN     int
	hdrOff   int
	fragLeft int // bytes of the current record's fragment not yet read
}

// Read implements io.Reader, returning bytes of the current record only.
func (r *recordConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.fragLeft > 0 {
		n, err := r.nbConn.Read(p[:min(len(p), r.fragLeft+tlsRecordHeaderBytes)])
		if n > r.fragLeft {
			r.hdrN = copy(r.hdr[:], p[r.fragLeft:n])
			n = r.fragLeft
		}
		r.fragLeft -= n
		return n, err
	}
	var err error
	if r.hdrOff == r.hdrN {
		var n int
		n, err = r.nbConn.Read(r.hdr[r.hdrN:])
		r.hdrN += n
	}
	n := copy(p, r.hdr[r.hdrOff:r.hdrN])
	r.hdrOff += n
	if r.hdrOff == tlsRecordHeaderBytes {
		r.fragLeft = int(binary.BigEndian.Uint16(r.hdr[3:]))
		r.hdrN, r.hdrOff = 0, 0
	}
	return n, err
}
