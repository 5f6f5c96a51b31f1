package upstream

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// idleServerEnv makes the test binary act as the idle-connection server
// (see TestMain), so its sockets and goroutines are not counted in ours.
const idleServerEnv = "UPSTREAM_TEST_IDLE_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(idleServerEnv) == "1" {
		runIdleServer()
		os.Exit(0)
	}
	if os.Getenv(hostCostServerEnv) == "1" {
		runHostCostServer()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runIdleServer accepts and upgrades connections on 127.0.0.1:0, prints the
// port, holds every connection without a goroutine and exits when stdin
// closes.
func runIdleServer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERR", err)
		return
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	go func() {
		var held []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if _, err := (ws.Upgrader{}).Upgrade(c); err != nil {
				c.Close()
				continue
			}
			held = append(held, c)
		}
	}()
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// raiseNoFile lifts the soft descriptor limit toward need and reports
// whether it got there.
func raiseNoFile(need uint64) bool {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return false
	}
	if rl.Cur >= need {
		return true
	}
	rl.Cur = min(need, rl.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return false
	}
	return rl.Cur >= need
}

// TestIdleConnections holds 1,000 and 3,000 idle subscriptions and checks
// that the goroutine count does not grow with them; it logs the heap cost
// per idle connection.
func TestIdleConnections(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), idleServerEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.HasPrefix(line, "ERR") {
		t.Fatalf("idle server: %q %v", line, err)
	}
	addr := "127.0.0.1:" + strings.TrimSpace(line)

	var deltas []int
	for _, n := range []int{1000, 3000} {
		if !raiseNoFile(uint64(n) + 256) {
			t.Logf("RLIMIT_NOFILE cannot reach %d; skipping %d connections", n+256, n)
			continue
		}
		deltas = append(deltas, idleRun(t, addr, n))
	}
	if len(deltas) == 2 && deltas[1] > deltas[0]+2 {
		t.Fatalf("goroutines grew with connections: %d at 1000, %d at 3000", deltas[0], deltas[1])
	}
}

// idleRun connects n hosts and returns the goroutine delta.
func idleRun(t *testing.T, addr string, n int) int {
	var connected atomic.Int64
	cfg := Config{
		Sink:               func(h *Host, f Frame) bool { f.Release(); return true },
		AllowInsecureHosts: true,
		MaxConcurrentDials: 32,
		Tick:               20 * time.Millisecond,
		OnConnect:          func(*Host) { connected.Add(1) },
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	g0 := runtime.NumGoroutine()
	hosts := make([]*Host, n)
	for i := range hosts {
		if hosts[i], err = l.Add(addr, HostOptions{Insecure: true}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, fmt.Sprintf("%d idle connections armed", n), func() bool {
		if connected.Load() < int64(n) {
			return false
		}
		for _, h := range hosts {
			h.mu.Lock()
			armed := h.state == stateArmed
			h.mu.Unlock()
			if !armed {
				return false
			}
		}
		return true
	})
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	g1 := runtime.NumGoroutine()
	perConn := (int64(ms1.HeapAlloc) - int64(ms0.HeapAlloc)) / int64(n)
	t.Logf("%d idle connections: goroutines %d → %d (delta %d), heap %d B per idle connection",
		n, g0, g1, g1-g0, perConn)
	if g1-g0 > 4 {
		t.Fatalf("goroutine delta %d with %d idle connections", g1-g0, n)
	}
	for _, h := range hosts {
		if h.Errors(ReasonDial)+h.Errors(ReasonHandshake) != 0 {
			t.Fatalf("host %s had dial failures", h.Name())
		}
	}
	return g1 - g0
}
