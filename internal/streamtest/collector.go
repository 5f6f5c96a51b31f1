package streamtest

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
)

// Collector keeps every binary frame one subscribeRepos connection
// delivers, in order. Its read goroutine owns the connection's reads;
// the frames are guarded by mu and read through Frames, Len and Wait.
type Collector struct {
	conn   net.Conn
	done   chan struct{}
	mu     sync.Mutex
	frames [][]byte
	err    error // why the read loop ended; read after done
}

// Collect starts reading binary frames from src, the reader/writer over
// conn that Dial returns, after gate closes (nil: at once). The
// connection is closed, and the read loop waited for, when the test ends.
func Collect(tb testing.TB, conn net.Conn, src io.ReadWriter, gate <-chan struct{}) *Collector {
	c := &Collector{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		if gate != nil {
			<-gate
		}
		for {
			b, err := wsutil.ReadServerBinary(src)
			if err != nil {
				c.err = err
				return
			}
			c.mu.Lock()
			c.frames = append(c.frames, b)
			c.mu.Unlock()
		}
	}()
	tb.Cleanup(c.Close)
	return c
}

// Conn is the collected connection.
func (c *Collector) Conn() net.Conn { return c.conn }

// Done is closed when the read loop has ended (the connection closed or
// failed).
func (c *Collector) Done() <-chan struct{} { return c.done }

// Close closes the connection and waits for the read loop.
func (c *Collector) Close() {
	_ = c.conn.Close()
	<-c.done
}

// Frames returns a copy of the list of frames received so far (the frames
// themselves are shared: do not modify them).
func (c *Collector) Frames() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.frames...)
}

// Len is how many frames were received so far.
func (c *Collector) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.frames)
}

// Wait waits until n frames were received and returns them, failing the
// test after limit (a guard against a hung test, not a speed assertion),
// with why the read loop ended if it did.
func (c *Collector) Wait(tb testing.TB, n int, limit time.Duration) [][]byte {
	tb.Helper()
	for deadline := time.Now().Add(limit); c.Len() < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			select {
			case <-c.done:
				tb.Fatalf("consumer got %d of %d frames; read loop ended: %v", c.Len(), n, c.err)
			default:
			}
			tb.Fatalf("consumer got %d of %d frames", c.Len(), n)
		}
	}
	return c.Frames()
}
