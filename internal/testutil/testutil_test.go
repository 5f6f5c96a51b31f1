package testutil

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
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
