package streamtest

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// Dial opens a WebSocket to url with d, failing the test if it cannot, and
// returns the connection and a reader/writer over it whose reads start
// with whatever the handshake read past the response. The connection is
// closed when the test ends.
func Dial(tb testing.TB, d ws.Dialer, url string) (net.Conn, io.ReadWriter) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		tb.Fatalf("dial %s: %v", url, err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	return conn, struct {
		io.Reader
		io.Writer
	}{r, conn}
}

// waitLimit bounds WaitFor: it only guards against a hung test, it is not
// an assertion about speed.
const waitLimit = 10 * time.Second

// WaitFor polls cond every millisecond until it holds, failing the test
// after waitLimit.
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for start := time.Now(); !cond(); time.Sleep(time.Millisecond) {
		if time.Since(start) > waitLimit {
			tb.Fatalf("timed out waiting for %s", what)
		}
	}
}
