package testutil

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	start := time.Date(2026, 11, 25, 22, 17, 57, 0, time.UTC)
	c := NewClock(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now = %v, want %v", got, start)
	}
	c.Advance(90 * time.Second)
	c.Advance(-30 * time.Second)
	if got, want := c.Now(), start.Add(time.Minute); !got.Equal(want) {
		t.Fatalf("after advancing: %v, want %v", got, want)
	}
}

const childEnv = "TESTUTIL_CHILD"

// TestStartChild runs this test again as a child that prints what it was
// given; the parent reads it back.
func TestStartChild(t *testing.T) {
	if v := os.Getenv(childEnv); v != "" {
		fmt.Println("child", v)
		return
	}
	cmd, out := StartChild(t, "TestStartChild", childEnv+"=hello")
	b, err := io.ReadAll(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "child hello\n") {
		t.Fatalf("child printed %q", b)
	}
}

func TestDo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Method", r.Method)
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "short and stout")
	}))
	defer srv.Close()
	req, err := http.NewRequest(http.MethodPost, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := Do(t, req)
	if resp.StatusCode != http.StatusTeapot || resp.Header.Get("X-Method") != "POST" || string(body) != "short and stout" {
		t.Fatalf("%d %v %q", resp.StatusCode, resp.Header, body)
	}
}

// TestTCPServer: each connection is served on its own, and cleanup closes
// a connection whose serve is still blocked reading.
func TestTCPServer(t *testing.T) {
	served := make(chan string, 2)
	var addr *net.TCPAddr
	var client net.Conn // open until the end: only cleanup ends the serve
	t.Run("server", func(t *testing.T) {
		addr = TCPServer(t, func(c net.Conn) {
			b, err := bufio.NewReader(c).ReadString('\n')
			if err == nil {
				served <- b
				_, _ = c.Write([]byte("ok\n"))
			}
			_, _ = c.Read(make([]byte, 1)) // blocks until cleanup
			served <- "closed"
		})
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		client = c
		if _, err := c.Write([]byte("hello\n")); err != nil {
			t.Fatal(err)
		}
		if got := <-served; got != "hello\n" {
			t.Fatalf("served %q", got)
		}
		if reply, err := bufio.NewReader(c).ReadString('\n'); err != nil || reply != "ok\n" {
			t.Fatalf("reply %q, %v", reply, err)
		}
	})
	// The subtest's cleanup has run: the blocked serve returned.
	if client != nil {
		defer client.Close()
	}
	select {
	case got := <-served:
		if got != "closed" {
			t.Fatalf("after cleanup: %q", got)
		}
	default:
		t.Fatal("cleanup returned with a serve call still running")
	}
	if c, err := net.Dial("tcp", addr.String()); err == nil {
		c.Close()
		t.Error("the listener still accepts after cleanup")
	}
}

// TestFreePort: the port is below the ephemeral range, so a bind of port
// 0 cannot be handed it, and it can be listened on at once.
func TestFreePort(t *testing.T) {
	for range 20 {
		p := FreePort(t)
		if p >= ephemeralLow() || p < 10000 {
			t.Fatalf("port %d, want in [10000, %d)", p, ephemeralLow())
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatal(err)
		}
		_ = ln.Close()
	}
}
