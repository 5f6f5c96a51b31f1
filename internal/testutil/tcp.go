package testutil

import (
	"net"
	"sync"
	"testing"
)

// TCPServer listens on 127.0.0.1:0 and calls serve, on a goroutine of its
// own, for each connection it accepts, closing the connection when serve
// returns: a raw peer for tests of what a client does with hostile or
// silent servers. At cleanup it stops accepting, closes every connection
// (so a serve blocked reading returns) and waits for every serve call. It
// returns the listening address.
func TCPServer(t testing.TB, serve func(c net.Conn)) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn // guarded by mu
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr)
}
