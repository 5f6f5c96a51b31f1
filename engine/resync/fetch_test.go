package resync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/atrelay/relay/engine/netguard"
	"github.com/atrelay/relay/pool"
)

func TestBaseURL(t *testing.T) {
	f := func(host string, insecure bool, want string, wantErr error) {
		t.Helper()
		got, err := baseURL(host, insecure)
		if got != want || !errors.Is(err, wantErr) {
			t.Errorf("baseURL(%q, %v) = %q, %v; want %q, %v", host, insecure, got, err, want, wantErr)
		}
	}
	f("pds.example.com", false, "https://pds.example.com", nil)
	f("pds.example.com", true, "https://pds.example.com", nil)
	f("localhost:2583", true, "http://localhost:2583", nil)
	f("localhost:2583", false, "", ErrInsecureHost)
	f("127.0.0.1:80", true, "http://127.0.0.1:80", nil)
	f("[::1]:80", false, "", ErrInsecureHost)
	f("localhost", false, "", ErrInsecureHost)
}

func TestPublicOnly(t *testing.T) {
	f := func(addr string, ok bool) {
		t.Helper()
		err := netguard.Policy{}.Control("tcp", addr, nil)
		if (err == nil) != ok || (err != nil && !errors.Is(err, ErrBlockedAddress)) {
			t.Errorf("publicOnly(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
	f("8.8.8.8:443", true)
	f("[2606:4700::1111]:443", true)
	f("127.0.0.1:443", false)
	f("10.1.2.3:443", false)
	f("192.168.0.1:443", false)
	f("169.254.169.254:80", false)
	f("[::1]:443", false)
	f("[::ffff:127.0.0.1]:443", false)
	f("[fd00::1]:443", false)
	f("0.0.0.0:443", false)
	f("not-an-address", false)
}

func TestClassifyStatus(t *testing.T) {
	f := func(code int, body string, want Outcome, retry bool, wantErr error) {
		t.Helper()
		o, r, err := classifyStatus(code, []byte(body))
		if o != want || r != retry || !errors.Is(err, wantErr) {
			t.Errorf("classifyStatus(%d, %q) = %s %v %v; want %s %v %v", code, body, o, r, err, want, retry, wantErr)
		}
	}
	f(400, `{"error":"RepoNotFound"}`, NotFound, false, ErrRepoNotFound)
	f(404, `{"error":"RepoNotFound"}`, NotFound, false, ErrRepoNotFound)
	f(404, `not json`, NotFound, false, ErrRepoNotFound)
	f(400, `{"error":"RepoDeactivated","message":"x"}`, Deactivated, false, ErrRepoDeactivated)
	f(403, `{"error":"RepoTakendown"}`, Takendown, false, ErrRepoTakendown)
	f(400, `{"error":"RepoSuspended"}`, Suspended, false, ErrRepoSuspended)
	f(400, `{"error":"InvalidRequest"}`, FetchError, false, ErrHTTPStatus)
	f(302, ``, FetchError, false, ErrHTTPStatus)
	f(429, ``, FetchError, true, ErrHTTPStatus)
	f(502, `<html>`, FetchError, true, ErrHTTPStatus)
}

// FuzzClassifyStatus: any status and body maps to an outcome without
// panicking, and only fetch errors are retried.
func FuzzClassifyStatus(f *testing.F) {
	f.Add(400, []byte(`{"error":"RepoDeactivated"}`))
	f.Add(404, []byte(``))
	f.Add(503, []byte(`{"error":5}`))
	f.Fuzz(func(t *testing.T, code int, body []byte) {
		o, retry, err := classifyStatus(code, body)
		if err == nil || o >= numOutcomes || o == OK || (retry && o != FetchError) {
			t.Fatalf("%d %q → %s retry=%v err=%v", code, body, o, retry, err)
		}
	})
}

// testMem returns a reservation in a fresh share of capacity bytes.
func testMem(capacity int64) *reservation {
	return newMemShare(capacity, metrics.NewSet().NewCounter("busy")).reservation()
}

func TestReadBounded(t *testing.T) {
	bufs := pool.NewBuffers(nil, "test")
	data := bytes.Repeat([]byte("0123456789"), 50_000) // 500,000 B
	f := func(name string, hint, max int64, wantErr error) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			mem := testMem(1 << 30)
			buf, err := readBounded(context.Background(), bufs, mem, nil, bytes.NewReader(data), hint, max)
			if !errors.Is(err, wantErr) {
				t.Fatalf("err %v, want %v", err, wantErr)
			}
			if used, _ := mem.s.stats(); err == nil && used != int64(cap(buf.B)) || err != nil && used != 0 {
				t.Fatalf("share holds %d bytes after err %v", used, err)
			}
			if err == nil {
				if !bytes.Equal(buf.B, data) {
					t.Fatalf("read %d bytes, want the %d sent", len(buf.B), len(data))
				}
				bufs.Put(buf)
			}
		})
	}
	n := int64(len(data))
	f("exact-hint", n, n, nil)
	f("unknown-length", -1, n, nil)
	f("low-hint", 10, 1<<20, nil)
	f("high-hint", 2*n, 1<<20, nil)
	f("one-over", -1, n-1, ErrTooLarge)
	f("hint-under-body", 10, n-1, ErrTooLarge)
	f("hint-at-class", 512<<10, 1<<20, nil) // full at the declared length, then EOF
	boom := errors.New("boom")
	if _, err := readBounded(context.Background(), bufs, testMem(1<<30), nil,
		io.MultiReader(bytes.NewReader(data[:100]), iotest{boom}), -1, n); !errors.Is(err, boom) {
		t.Fatalf("read error %v, want boom", err)
	}
	// The share, not MaxRepoBytes, stops a body it cannot hold (old and
	// new buffer together while growing). A 300 kB share grows 64 KiB →
	// 128 KiB (exact: the 512 KiB class does not fit) → 168,928 B (all
	// that is left), and cannot grow further.
	if _, err := readBounded(context.Background(), bufs, testMem(300_000), nil, bytes.NewReader(data[:200_000]), -1, 1<<30); !errors.Is(err, ErrRepoMemory) {
		t.Fatalf("200 kB in a 300 kB share: %v, want ErrRepoMemory", err)
	}
	buf, err := readBounded(context.Background(), bufs, testMem(300_000), nil, bytes.NewReader(data[:160_000]), -1, 1<<30)
	if err != nil || !bytes.Equal(buf.B, data[:160_000]) {
		t.Fatalf("160 kB in a 300 kB share: %v", err)
	}
}

// iotest is a reader that fails.
type iotest struct{ err error }

func (r iotest) Read([]byte) (int, error) { return 0, r.err }

// TestReadBoundedAllocs: with the length known, reading a repository
// into a pooled buffer does not allocate once the pool is warm.
func TestReadBoundedAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops Puts at random under -race")
	}
	bufs := pool.NewBuffers(nil, "test")
	data := bytes.Repeat([]byte("x"), 300_000)
	var rd bytes.Reader
	mem := testMem(1 << 30)
	ctx := context.Background()
	run := func() {
		rd.Reset(data)
		buf, err := readBounded(ctx, bufs, mem, nil, &rd, int64(len(data)), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		bufs.Put(buf)
		mem.release()
	}
	run()
	if a := testing.AllocsPerRun(50, run); a != 0 {
		t.Fatalf("%.1f allocs per read, want 0", a)
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(10, 3, func() time.Time { return now })
	// After idling, burst tokens are free at once, then one per 100 ms.
	for i := range 3 {
		if d := l.reserve(); d != 0 {
			t.Fatalf("burst token %d waits %v", i, d)
		}
	}
	for i := 1; i <= 3; i++ {
		if d := l.reserve(); d != time.Duration(i)*100*time.Millisecond {
			t.Fatalf("token %d waits %v", i+3, d)
		}
	}
	// Over any window only burst + window/interval starts are possible:
	// ten seconds later the backlog is paid and exactly 3 are free again.
	now = now.Add(10 * time.Second)
	free := 0
	for l.reserve() == 0 {
		free++
	}
	if free != 3 {
		t.Fatalf("%d free tokens after idling, want the burst of 3", free)
	}
}

func TestOutcomeNames(t *testing.T) {
	seen := map[string]bool{}
	for _, o := range AllOutcomes() {
		s := o.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Fatalf("outcome %d has label %q", o, s)
		}
		seen[s] = true
	}
	if Outcome(200).String() != "unknown" {
		t.Fatal("out-of-range outcome has a label")
	}
}

func TestBackoff(t *testing.T) {
	r := &Resyncer{cfg: Config{RetryBackoff: time.Second, MaxBackoff: 5 * time.Second}}
	f := func(attempt int, lo, hi time.Duration) {
		t.Helper()
		for range 50 {
			if d := r.backoff(attempt); d < lo || d > hi {
				t.Fatalf("backoff(%d) = %v, want %v..%v", attempt, d, lo, hi)
			}
		}
	}
	f(1, 750*time.Millisecond, 1250*time.Millisecond)
	f(2, 1500*time.Millisecond, 2500*time.Millisecond)
	f(3, 3*time.Second, 5*time.Second)
	f(10, 3750*time.Millisecond, 6250*time.Millisecond)
}

func BenchmarkReadBounded(b *testing.B) {
	bufs := pool.NewBuffers(nil, "bench")
	data := bytes.Repeat([]byte("x"), 4<<20)
	var rd bytes.Reader
	mem := testMem(DefaultMemoryBytes)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(data)
		buf, err := readBounded(context.Background(), bufs, mem, nil, &rd, int64(len(data)), DefaultMaxRepoBytes)
		if err != nil {
			b.Fatal(err)
		}
		bufs.Put(buf)
		mem.release()
	}
}
