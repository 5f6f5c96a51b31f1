package plc

import (
	"context"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// recordWaits replaces s's waits with a recorder that answers at once:
// the configured delays are measured, not wall time.
func recordWaits(s *Server) func() []time.Duration {
	var mu sync.Mutex
	var waits []time.Duration
	s.wait = func(_ context.Context, d time.Duration) bool {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return d >= 0 // a timeout's client gives up
	}
	return func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(waits)
	}
}

// serve runs n requests for did1 through s's handler and counts the
// status codes, 0 for a request left unanswered.
func serve(s *Server, n int) map[int]int {
	codes := map[int]int{}
	for range n {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/"+did1, nil))
		if w.Body.Len() == 0 && len(w.Header()) == 0 {
			codes[0]++
		} else {
			codes[w.Code]++
		}
	}
	return codes
}

func quantile(d []time.Duration, q float64) time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d[int(q*float64(len(d)-1))]
}

// TestLatencyDistribution: the delays of 2,000 requests have the
// configured p50 and p99 (generous bounds; the seed makes them
// reproducible anyway), and the cap holds.
func TestLatencyDistribution(t *testing.T) {
	s := New()
	s.Put(did1, Doc{Handle: "a.test", PDS: "https://pds-1.localhost:4433", Key: key1})
	waits := recordWaits(s)
	if err := s.SetBehaviour(Behaviour{LatencyP50: 80 * time.Millisecond, LatencyP99: 400 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if codes := serve(s, 2000); codes[200] != 2000 {
		t.Fatalf("codes %v", codes)
	}
	d := waits()
	if len(d) != 2000 {
		t.Fatalf("%d waits", len(d))
	}
	p50, p99 := quantile(d, 0.50), quantile(d, 0.99)
	t.Logf("p50 %v, p99 %v, max %v", p50, p99, slices.Max(d))
	if p50 < 70*time.Millisecond || p50 > 92*time.Millisecond || p99 < 280*time.Millisecond || p99 > 560*time.Millisecond {
		t.Fatalf("p50 %v (want ~80ms), p99 %v (want ~400ms)", p50, p99)
	}
	if mx := slices.Max(d); mx > 4*time.Second || slices.Min(d) <= 0 {
		t.Fatalf("delays range %v..%v", slices.Min(d), mx)
	}

	// A fixed latency, the old SetLatency.
	s.SetLatency(5 * time.Millisecond)
	serve(s, 10)
	for _, w := range waits()[2000:] {
		if w != 5*time.Millisecond {
			t.Fatalf("fixed latency waited %v", w)
		}
	}
}

// TestErrorAndTimeoutRates: 0.5 % of 20,000 requests answered 500 and
// 0.5 % held unanswered (expected 100 each, bounds at four standard
// deviations), the rest served; the held ones wait for the client.
func TestErrorAndTimeoutRates(t *testing.T) {
	s := New()
	s.Put(did1, Doc{Handle: "a.test", PDS: "https://pds-1.localhost:4433", Key: key1})
	waits := recordWaits(s)
	if err := s.SetBehaviour(Behaviour{ErrorRate: 0.005, TimeoutRate: 0.005}); err != nil {
		t.Fatal(err)
	}
	const n = 20_000
	codes := serve(s, n)
	c := s.Counters()
	if c.Failures < 60 || c.Failures > 140 || c.TimedOut < 60 || c.TimedOut > 140 {
		t.Fatalf("failures %d, timeouts %d of %d (want ~100 each)", c.Failures, c.TimedOut, n)
	}
	if int64(codes[500]) != c.Failures || int64(codes[200]) != c.Served || int64(codes[0]) != c.TimedOut || c.Served+c.Failures+c.TimedOut != n {
		t.Fatalf("codes %v, counters %+v", codes, c)
	}
	if w := waits(); int64(len(w)) != c.TimedOut || slices.Max(w) >= 0 {
		t.Fatalf("waits %v for %d timeouts", w, c.TimedOut)
	}
}

// TestTimeoutHoldsUntilClientGivesUp: through a real socket, a request
// chosen to time out gets no answer; the client's own timeout ends it, the
// server counts it, and Close does not wait for it.
func TestTimeoutHoldsUntilClientGivesUp(t *testing.T) {
	s := start(t)
	s.Put(did1, Doc{Handle: "a.test", PDS: "https://pds-1.localhost:4433", Key: key1})
	if err := s.SetBehaviour(Behaviour{TimeoutRate: 1}); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 200 * time.Millisecond}
	if resp, err := client.Get(s.URL() + "/" + did1); err == nil {
		resp.Body.Close()
		t.Fatalf("answered %s", resp.Status)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Counters().TimedOut != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("counters %+v", s.Counters())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A second held request is released by Close.
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(s.URL() + "/" + did1)
		if err == nil {
			resp.Body.Close()
			err = errors.New("answered " + resp.Status)
		}
		done <- err
	}()
	for s.Counters().Requests != 2 {
		time.Sleep(5 * time.Millisecond)
	}
	s.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close left the held request hanging")
	}
}

// TestRateLimit: a token bucket of 100 requests a second (burst 100)
// serves the first 100 requests of an instant and answers 429 with
// Retry-After to the rest, then refills with time.
func TestRateLimit(t *testing.T) {
	s := New()
	s.Put(did1, Doc{Handle: "a.test", PDS: "https://pds-1.localhost:4433", Key: key1})
	now := time.Unix(1_700_000_000, 0)
	s.now = func() time.Time { return now }
	if err := s.SetBehaviour(Behaviour{RatePerSecond: 100}); err != nil {
		t.Fatal(err)
	}
	if codes := serve(s, 150); codes[200] != 100 || codes[429] != 50 {
		t.Fatalf("burst: %v", codes)
	}
	now = now.Add(250 * time.Millisecond)
	if codes := serve(s, 40); codes[200] != 25 || codes[429] != 15 {
		t.Fatalf("after 250ms: %v", codes)
	}
	now = now.Add(time.Hour) // refills to the burst, not beyond
	if codes := serve(s, 120); codes[200] != 100 || codes[429] != 20 {
		t.Fatalf("after an hour: %v", codes)
	}
	if c := s.Counters(); c.RateLimited != 85 || c.Served != 225 {
		t.Fatalf("counters %+v", c)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/"+did1, nil))
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("429: %d %v", w.Code, w.Header())
	}
}

// TestRateLimitSocket: the limit holds through a real socket and clock.
func TestRateLimitSocket(t *testing.T) {
	s := start(t)
	s.Put(did1, Doc{Handle: "a.test", PDS: "https://pds-1.localhost:4433", Key: key1})
	if err := s.SetBehaviour(Behaviour{RatePerSecond: 5}); err != nil {
		t.Fatal(err)
	}
	codes := map[int]int{}
	for range 30 {
		code, _, _ := get(t, s, "/"+did1, "")
		codes[code]++
	}
	// 5 at once, plus at most a few refilled while the 30 run.
	if codes[200] < 5 || codes[200] > 15 || codes[200]+codes[429] != 30 {
		t.Fatalf("codes %v", codes)
	}
}

func TestBehaviourFlags(t *testing.T) {
	parse := func(args ...string) (Behaviour, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		get := Flags(fs)
		if err := fs.Parse(args); err != nil {
			return Behaviour{}, err
		}
		return get()
	}
	b, err := parse("--plc-latency", "80ms,400ms", "--plc-errors", "0.005", "--plc-timeouts", "0.005", "--plc-rate", "3000")
	want := Behaviour{LatencyP50: 80 * time.Millisecond, LatencyP99: 400 * time.Millisecond, ErrorRate: 0.005, TimeoutRate: 0.005, RatePerSecond: 3000}
	if err != nil || b != want {
		t.Fatalf("got %+v, %v", b, err)
	}
	if s := b.String(); s != "latency 80ms,400ms, errors 0.005, timeouts 0.005, rate 3000/s burst 3000" {
		t.Fatalf("String %q", s)
	}
	if b, err := parse("--plc-latency", "20ms"); err != nil || b.LatencyP50 != 20*time.Millisecond || b.LatencyP99 != b.LatencyP50 {
		t.Fatalf("fixed: %+v %v", b, err)
	}
	if b, err := parse(); err != nil || b != (Behaviour{}) || b.String() != "" {
		t.Fatalf("default: %+v %v", b, err)
	}
	for _, args := range [][]string{
		{"--plc-latency", "400ms,80ms"},
		{"--plc-latency", "fast"},
		{"--plc-errors", "1.5"},
		{"--plc-errors", "0.6", "--plc-timeouts", "0.6"},
		{"--plc-rate", "-1"},
	} {
		if _, err := parse(args...); !errors.Is(err, ErrBadBehaviour) {
			t.Errorf("%v: %v", args, err)
		}
	}
}
