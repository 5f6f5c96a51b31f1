package testutil

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
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

// FreePort returns a loopback TCP port that nothing listens on, for a
// child process that must be told its port before it starts. It picks
// below the kernel's ephemeral range: a port taken from that range and
// released is the kind the kernel hands to the next bind of port 0 (a
// fake PLC, a replay host started after this call), and the child then
// finds its port taken. Outside the range only another explicit bind can
// race it.
func FreePort(t testing.TB) int {
	t.Helper()
	low := ephemeralLow()
	const floor = 10000
	if low <= floor+100 {
		low = 65536 // an unusual range: fall back to a plain port 0 bind
	}
	for range 100 {
		port := 0
		if low < 65536 {
			port = floor + rand.IntN(low-floor)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue // in use
		}
		port = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		return port
	}
	t.Fatal("testutil: no free loopback port below the ephemeral range")
	return 0
}

// ephemeralLow is the lowest port the kernel gives to a bind of port 0
// (Linux's ip_local_port_range); 32768 where it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if f := strings.Fields(string(b)); err == nil && len(f) == 2 {
		if n, err := strconv.Atoi(f[0]); err == nil && n > 0 {
			return n
		}
	}
	return 32768
}
