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

// WaitFor polls cond until it holds, failing the test after 10 s.
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
