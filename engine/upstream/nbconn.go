package upstream

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// nbConn is the TCP connection under one upstream. During the dial it is an
// ordinary blocking net.Conn (TLS handshake and HTTP upgrade use the Go
// poller and deadlines). Once registered with the loop's epoll it switches to
// nonblocking reads and writes: Read calls read(2) on the raw descriptor and
// returns errWouldBlock instead of parking a goroutine, so no goroutine ever
// waits on an idle host. Write sends what the socket takes now and keeps the
// rest (at most maxOwedBytes: a few control frames) for flush, so a peer
// that never reads cannot block a reader goroutine. Close always goes
// through the embedded conn.
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

	// flightLeft, while flightLimit is set (the dialer's TLS handshake),
	// is how many more bytes blocking reads may return
	// (maxTLSHandshakeBytes).
	flightLimit bool
	flightLeft  int

	owed      []byte // written but not yet taken by the socket; allocated on first need
	owedSince int64  // unix nanos owed became non-empty
}

// maxOwedBytes bounds owed: a pong or ping (≤ 131 bytes) or close frame in a
// TLS record (+ 29 bytes), plus what crypto/tls may write on its own (a key
// update, a close_notify alert). Control frames are skipped while bytes are
// owed, so more than this means the peer does not read: ErrWriteStalled.
const maxOwedBytes = 2 << 10

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
		if !c.flightLimit {
			return c.Conn.Read(p)
		}
		if c.flightLeft <= 0 && len(p) > 0 {
			return 0, ErrTLSHandshakeTooLarge
		}
		n, err := c.Conn.Read(p[:min(len(p), c.flightLeft)])
		c.flightLeft -= n
		return n, err
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

// Write implements io.Writer; see the type doc for the two modes. In
// nonblocking mode it never blocks and, short of ErrWriteStalled or a socket
// error, reports all of p written: crypto/tls treats any write error as
// fatal, so bytes the socket cannot take yet are owed, not refused.
func (c *nbConn) Write(p []byte) (int, error) {
	if !c.nonblock {
		return c.Conn.Write(p)
	}
	if err := c.flush(); err != nil {
		return 0, err
	}
	sent := 0
	if len(c.owed) == 0 {
		n, err := sendNonblock(c.fd, p)
		if err != nil {
			return 0, err
		}
		if n == len(p) {
			return n, nil
		}
		sent = n
		c.owedSince = time.Now().UnixNano()
	}
	if len(c.owed)+len(p)-sent > maxOwedBytes {
		return sent, ErrWriteStalled
	}
	c.owed = append(c.owed, p[sent:]...)
	return len(p), nil
}

// owes reports whether written bytes still wait for room in the socket.
func (c *nbConn) owes() bool { return len(c.owed) > 0 }

// flush sends as much of owed as the socket takes now.
func (c *nbConn) flush() error {
	if len(c.owed) == 0 {
		return nil
	}
	n, err := sendNonblock(c.fd, c.owed)
	if err != nil {
		return err
	}
	c.owed = c.owed[:copy(c.owed, c.owed[n:])]
	return nil
}

// sendNonblock sends what the socket takes without blocking (0 when it is
// full). MSG_NOSIGNAL: a peer that reset the connection yields EPIPE, not a
// signal.
func sendNonblock(fd int, p []byte) (int, error) {
	for {
		n, err := unix.SendmsgN(fd, p, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, nil
		default:
			return 0, err
		}
	}
}
