package upstream

import (
	"errors"
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// nbConn is the TCP connection under one upstream. During the dial it is an
// ordinary blocking net.Conn (TLS handshake and HTTP upgrade use the Go
// poller and deadlines). Once registered with the loop's epoll it switches to
// nonblocking reads: Read calls read(2) on the raw descriptor and returns
// errWouldBlock instead of parking a goroutine, so no goroutine ever waits on
// an idle host. Writes and Close always go through the embedded conn.
//
// Why raw reads rather than a past read deadline: a deadline costs a timer
// update per turn and turns an empty socket into a timeout error the Go
// poller had to schedule; read(2) on the already nonblocking descriptor
// answers EAGAIN directly. crypto/tls works on top unchanged because
// errWouldBlock is a temporary net.Error.
//
// Owned by the goroutine owning the host's connection; fd stays valid until
// Close, which only the owner calls.
type nbConn struct {
	net.Conn      // the *net.TCPConn (or a stream socket in tests)
	fd       int  // raw descriptor, valid until Close
	nonblock bool // set once by the dialer before the first reader turn
}

// syscallConn is what newNBConn needs from the dialed connection.
type syscallConn interface {
	net.Conn
	SyscallConn() (syscall.RawConn, error)
}

// errNoFD is returned when the connection cannot expose its descriptor.
var errNoFD = errors.New("upstream: connection has no file descriptor")

// newNBConn wraps c, learning its descriptor.
func newNBConn(c net.Conn) (*nbConn, error) {
	sc, ok := c.(syscallConn)
	if !ok {
		return nil, errNoFD
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	if err := rc.Control(func(d uintptr) { fd = int(d) }); err != nil {
		return nil, err
	}
	return &nbConn{Conn: c, fd: fd}, nil
}

// Read implements io.Reader; see the type doc for the two modes.
func (c *nbConn) Read(p []byte) (int, error) {
	if !c.nonblock {
		return c.Conn.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := unix.Read(c.fd, p)
		switch {
		case err == nil && n == 0:
			return 0, io.EOF
		case err == nil:
			return n, nil
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, errWouldBlock
		default:
			return 0, err
		}
	}
}
