package upstream

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/atrelay/relay/internal/testutil"
)

// TestRecordConn feeds a nonblocking socket a stream of TLS records in
// pieces cut at every kind of place (inside a header, at its end, inside a
// fragment, several records at once) and reads it through recordConn with
// a buffer larger than any record: every read must return bytes of one
// header or one fragment only, a read of an empty socket errWouldBlock, and
// the bytes must come out whole and in order.
func TestRecordConn(t *testing.T) {
	type part struct{ start, end int } // a header or a fragment in stream
	var parts []part
	stream := tlsRecords(func(start, end int) { parts = append(parts, part{start, end}) },
		0, 1, 300, 16401, 5, 0, 18432, 2, 16401, 16401, 7)
	// within reports whether stream[off:off+n] lies in one header or
	// fragment.
	within := func(off, n int) bool {
		for _, p := range parts {
			if off >= p.start && off < p.end {
				return off+n <= p.end
			}
		}
		return false
	}

	srv := make(chan net.Conn, 1)
	addr := testutil.TCPServer(t, func(c net.Conn) {
		srv <- c
		<-t.Context().Done()
	})
	nc, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nb, err := newNBConn(nc)
	if err != nil {
		t.Fatal(err)
	}
	nb.nonblock = true
	rc := &recordConn{nbConn: nb}
	peer := <-srv

	var got []byte
	buf := make([]byte, 64<<10)
	if n, err := rc.Read(buf); n != 0 || err != errWouldBlock {
		t.Fatalf("empty socket: Read = %d, %v; want 0, errWouldBlock", n, err)
	}
	sizes := []int{1, 2, 3, 7, 700, 5000, 40000}
	for sent, i := 0, 0; sent < len(stream); i++ {
		chunk := stream[sent:min(len(stream), sent+sizes[i%len(sizes)])]
		if _, err := peer.Write(chunk); err != nil {
			t.Fatal(err)
		}
		sent += len(chunk)
		deadline := time.Now().Add(5 * time.Second)
		for len(got) < sent {
			n, err := rc.Read(buf)
			if n > 0 && !within(len(got), n) {
				t.Fatalf("a read at stream offset %d returned %d bytes, past the header or fragment it began in", len(got), n)
			}
			got = append(got, buf[:n]...)
			switch {
			case err == errWouldBlock && time.Now().Before(deadline):
				time.Sleep(time.Millisecond) // loopback: the rest is on its way
			case err != nil:
				t.Fatalf("after %d of %d bytes sent: %v", len(got), sent, err)
			}
		}
		if n, err := rc.Read(buf); n != 0 || err != errWouldBlock {
			t.Fatalf("drained socket: Read = %d, %v; want 0, errWouldBlock", n, err)
		}
	}
	if !bytes.Equal(got, stream) {
		t.Fatal("the bytes read differ from the bytes sent")
	}
}

// tlsRecords returns records of the given fragment lengths, calling part
// with the range of every header and non-empty fragment.
func tlsRecords(part func(start, end int), lengths ...int) []byte {
	var stream []byte
	for i, n := range lengths {
		hdr := [tlsRecordHeaderBytes]byte{23, 3, 3}
		binary.BigEndian.PutUint16(hdr[3:], uint16(n))
		part(len(stream), len(stream)+len(hdr))
		stream = append(stream, hdr[:]...)
		if n > 0 {
			part(len(stream), len(stream)+n)
			stream = append(stream, payloadN(i, n)...)
		}
	}
	return stream
}

// TestRecordConnReads: while records stream in, recordConn reads the
// socket once a record, as crypto/tls did without it: the read that ends
// a fragment brings the next header along, and recordConn hands it out
// from what it holds.
func TestRecordConnReads(t *testing.T) {
	lengths := []int{1, 300, 16401, 5, 18432, 16401}
	src := &countingConn{r: bytes.NewReader(tlsRecords(func(int, int) {}, lengths...))}
	rc := &recordConn{nbConn: &nbConn{Conn: src}}
	buf := make([]byte, 64<<10)
	var err error
	for err == nil {
		_, err = rc.Read(buf)
	}
	if err != io.EOF {
		t.Fatal(err)
	}
	// The first header's read, one a record, the read that saw EOF.
	if want := 1 + len(lengths) + 1; src.reads != want {
		t.Fatalf("%d reads of the socket for %d records, want %d", src.reads, len(lengths), want)
	}
}

// countingConn is a net.Conn whose reads come from r and are counted;
// nothing else of it is used.
type countingConn struct {
	net.Conn
	r     *bytes.Reader
	reads int
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}
