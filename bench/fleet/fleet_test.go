package fleet

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/mst"
)

func newTestFleet(t *testing.T, opts Options) *Fleet {
	t.Helper()
	f, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestFirehoseVerifies drives a small fleet through every action kind plus
// a migration and a key rotation and checks every host's stream from
// cursor 0: every commit verifies, inverts to prevData and continues its
// account's chain.
func TestFirehoseVerifies(t *testing.T) {
	for _, curve := range []atcrypto.Curve{atcrypto.K256, atcrypto.P256} {
		t.Run(curve.String(), func(t *testing.T) {
			f := newTestFleet(t, Options{Workload: Workload{Hosts: 3, AccountsPerHost: 4, Curve: curve, Seed: 7,
				IdentityShare: 0.05, DeactivateShare: 0.05, DeleteAccountShare: 0.01, SyncShare: 0.03, MultiOpShare: 0.3}})
			hosts := f.Hosts()
			checkers := make([]*checker, len(hosts))
			for i, h := range hosts {
				checkers[i] = newChecker(t, h, f.PLCURL())
				checkers[i].dial("0")
				defer checkers[i].close()
			}
			readAll := func() {
				for i, h := range hosts {
					checkers[i].readUntil(h.Seq())
				}
			}
			steps := func(n int) {
				for range n {
					if _, err := f.Step(); err != nil {
						t.Fatal(err)
					}
				}
				readAll()
			}
			steps(150)
			did := hosts[1].Accounts()[0]
			if err := f.Migrate(did, hosts[2]); err != nil {
				t.Fatal(err)
			}
			readAll()
			if err := f.RotateKey(hosts[0].Accounts()[0]); err != nil {
				t.Fatal(err)
			}
			steps(150)
			var commits int
			for _, c := range checkers {
				c.want(map[string]int{})
				commits += c.got[outCommitOK]
			}
			if commits < 200 {
				t.Errorf("only %d commits verified", commits)
			}
			if h, _ := f.Home(did); h != hosts[2] {
				t.Errorf("migrated account lives on %v", h.Name)
			}
		})
	}
}

// TestFaults injects every fault once on host 0 while a checker follows
// it live, and checks each was counted once and was detected as bad in
// exactly the way its doc says.
func TestFaults(t *testing.T) {
	f := newTestFleet(t, Options{Workload: Workload{Hosts: 2, AccountsPerHost: 2, Seed: 3}})
	h := f.Hosts()[0]
	c := newChecker(t, h, f.PLCURL())
	c.dial("0")
	defer c.close()
	c.readUntil(h.Seq())
	marker := func() { // a normal commit after each fault, to read up to
		t.Helper()
		if err := h.withActive(func(a *Account) error {
			ev, err := a.st.commit(a.st.writes())
			if err != nil {
				return err
			}
			return a.publishLocked([]Event{ev})
		}); err != nil {
			t.Fatal(err)
		}
		c.readUntil(h.Seq())
	}
	for _, k := range AllFaults() {
		if err := h.Inject(k); err != nil {
			t.Fatalf("%v: %v", k, err)
		}
		marker()
	}
	c.want(map[string]int{
		outMalformed: 2, // malformed CBOR, truncated
		outOversize:  1,
		outSigFail:   1,
		outForeign:   1,
		outStaleRev:  2, // replay, rollback
		outChain:     1,
		outSeqBack:   1,
		"reconnect":  1, // disconnect
	})
	counts := f.FaultCounts()
	for _, k := range AllFaults() {
		if counts[k] != 1 {
			t.Errorf("%v counted %d, want 1", k, counts[k])
		}
	}
	if got := f.Hosts()[1].FaultCounts(); got != (FaultCounts{}) {
		t.Errorf("host 1 counted faults %v", got)
	}
	// Cursor replay from 0 meets none of the live-only faults again.
	r := newChecker(t, h, f.PLCURL())
	r.dial("0")
	r.readUntil(h.Seq())
	r.close()
	r.want(map[string]int{outSigFail: 1, outForeign: 1, outStaleRev: 2, outChain: 1})
	if err := h.Inject(FaultKind(200)); !errors.Is(err, ErrUnknownFault) && !errors.Is(err, ErrNoAccount) {
		t.Errorf("unknown fault: %v", err)
	}
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// TestXRPC checks getRepo, getLatestCommit, getRepoStatus, listRepos,
// describeServer and _health.
func TestXRPC(t *testing.T) {
	f := newTestFleet(t, Options{Workload: Workload{Hosts: 1, AccountsPerHost: 5, Seed: 1}})
	for range 60 {
		if _, err := f.Step(); err != nil {
			t.Fatal(err)
		}
	}
	h := f.Hosts()[0]
	base := "http://" + h.Addr + "/xrpc/"
	for _, did := range h.Accounts() {
		var st struct {
			DID    string `json:"did"`
			Active bool   `json:"active"`
			Status string `json:"status"`
			Rev    string `json:"rev"`
		}
		if code := getJSON(t, base+"com.atproto.sync.getRepoStatus?did="+did, &st); code != 200 || st.DID != did {
			t.Fatalf("getRepoStatus %s: %d %+v", did, code, st)
		}
		if !st.Active {
			continue
		}
		var lc struct{ CID, Rev string }
		if code := getJSON(t, base+"com.atproto.sync.getLatestCommit?did="+did, &lc); code != 200 || lc.Rev != st.Rev {
			t.Fatalf("getLatestCommit %s: %d %+v", did, code, lc)
		}
		resp, err := http.Get(base + "com.atproto.sync.getRepo?did=" + did)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var rd car.Reader
		if err := rd.Reset(body, car.Options{VerifyHashes: true}); err != nil {
			t.Fatalf("getRepo %s: %v", did, err)
		}
		if rd.Root().String() != lc.CID {
			t.Fatalf("getRepo root %s, latest commit %s", rd.Root(), lc.CID)
		}
		c := newChecker(t, h, f.PLCURL())
		data, bad := c.commitBlock([]byte(did), []byte(lc.Rev), rd.Root(), body)
		if bad != "" {
			t.Fatalf("getRepo commit: %s", bad)
		}
		var w mst.Walker
		n := 0
		err = w.Walk(rd.Get, data, func(_ []byte, v cid.CID) error {
			if _, ok := rd.Get(v); !ok {
				t.Errorf("record %s missing from getRepo", v)
			}
			n++
			return nil
		})
		a := f.account(did)
		a.mu.Lock()
		want := a.st.repo.Len()
		a.mu.Unlock()
		if err != nil || n != want {
			t.Fatalf("walk %s: %d keys (want %d), %v", did, n, want, err)
		}
	}
	var seen []string
	cursor := ""
	for pages := 0; ; pages++ {
		var page ListReposPage
		if code := getJSON(t, base+"com.atproto.sync.listRepos?limit=2&cursor="+cursor, &page); code != 200 {
			t.Fatalf("listRepos: %d", code)
		}
		for _, r := range page.Repos {
			seen = append(seen, r.DID)
		}
		if page.Cursor == "" {
			break
		}
		cursor = page.Cursor
		if pages > 10 {
			t.Fatal("listRepos does not end")
		}
	}
	if len(seen) != 5 {
		t.Errorf("listRepos listed %d accounts, want 5", len(seen))
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{"com.atproto.sync.listRepos?limit=0", 400},
		{"com.atproto.sync.getRepo?did=did:plc:nobody", 400},
		{"com.atproto.sync.getLatestCommit", 400},
		{"com.atproto.server.describeServer", 200},
		{"_health", 200},
		{"com.atproto.sync.subscribeRepos?cursor=-1", 400},
		{"com.atproto.sync.subscribeRepos?cursor=x", 400},
	} {
		if code := getJSON(t, base+tc.path, nil); code != tc.code {
			t.Errorf("%s: %d, want %d", tc.path, code, tc.code)
		}
	}
}

// TestCursor checks live-only, FutureCursor and OutdatedCursor.
func TestCursor(t *testing.T) {
	f := newTestFleet(t, Options{Workload: Workload{Hosts: 1, AccountsPerHost: 3, Seed: 2}, HistoryEvents: 8})
	h := f.Hosts()[0]
	for range 20 {
		f.Step()
	}
	head := h.Seq()
	fut := newChecker(t, h, f.PLCURL())
	fut.dial(strconv.FormatInt(head+5, 10))
	fut.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	fr, err := readOne(fut)
	if err != nil || fut.dec.Decode(fr, &fut.msg) != nil || string(fut.msg.Error.Error) != "FutureCursor" {
		t.Fatalf("future cursor: %v %q", err, fut.msg.Error.Error)
	}
	fut.close()

	old := newChecker(t, h, f.PLCURL())
	old.dial("1")
	old.readUntil(head)
	old.close()
	if old.got[outInfo] != 1 {
		t.Errorf("outdated cursor: %v", old.got)
	}
	live := newChecker(t, h, f.PLCURL())
	live.dial("")
	defer live.close()
	for h.Stats().Open < 1 {
		runtime.Gosched()
	}
	f.Step()
	for h.Seq() == head {
		f.Step()
	}
	live.readUntil(h.Seq())
	if live.last <= head {
		t.Errorf("live stream started at %d, head was %d", live.last, head)
	}
}

// TestRequestCrawl sends requestCrawl for every host to a fake relay.
func TestRequestCrawl(t *testing.T) {
	f := newTestFleet(t, Options{Workload: Workload{Hosts: 3, AccountsPerHost: 1}})
	got := make(chan string, 3)
	relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Hostname string }
		if r.Method != http.MethodPost || r.URL.Path != "/xrpc/com.atproto.sync.requestCrawl" ||
			json.NewDecoder(r.Body).Decode(&body) != nil {
			w.WriteHeader(400)
			return
		}
		got <- body.Hostname
	}))
	defer relay.Close()
	if err := f.RequestCrawlAll(t.Context(), relay.URL); err != nil {
		t.Fatal(err)
	}
	for _, name := range f.Hostnames() {
		if g := <-got; g != name {
			t.Errorf("crawl for %q, want %q", g, name)
		}
	}
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(403) }))
	defer refuse.Close()
	if err := f.Hosts()[0].RequestCrawl(t.Context(), refuse.URL); !errors.Is(err, ErrCrawl) {
		t.Errorf("refused crawl: %v", err)
	}
}

// TestManyHosts starts and stops 3,000 hosts (300 with -short).
func TestManyHosts(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	start := time.Now()
	f, err := New(Options{Workload: Workload{Hosts: n, AccountsPerHost: 1}})
	if err != nil {
		t.Fatal(err)
	}
	up := time.Since(start)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	goroutines := runtime.NumGoroutine()
	for range 100 {
		if _, err := f.Step(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d hosts: up in %v, %d goroutines, heap %d MB, closed in %v",
		n, up, goroutines, ms.HeapAlloc>>20, time.Since(start)-up)
	if goroutines > n+50 {
		t.Errorf("%d goroutines for %d idle hosts", goroutines, n)
	}
}

// TestWorkloadValidate checks that every bad field is reported.
func TestWorkloadValidate(t *testing.T) {
	f := func(w Workload) {
		t.Helper()
		if err := w.WithDefaults().Validate(); !errors.Is(err, ErrBadWorkload) {
			t.Errorf("%+v: %v", w, err)
		}
	}
	f(Workload{HostSkew: 1})
	f(Workload{AccountSkew: 0.5})
	f(Workload{MaxOpsPerCommit: 201})
	f(Workload{RecordBytesMin: 10, RecordBytesMax: 5})
	f(Workload{IdentityShare: 0.5, DeactivateShare: 0.5})
	f(Workload{Curve: atcrypto.Curve(9)})
	if err := (Workload{}).WithDefaults().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// TestRun drives the fleet with paced parallel workers.
func TestRun(t *testing.T) {
	f := newTestFleet(t, Options{Workload: Workload{Hosts: 2, AccountsPerHost: 3, EventsPerSecond: 20_000, Seed: 4}})
	before := f.Hosts()[0].Seq() + f.Hosts()[1].Seq()
	if err := f.Run(t.Context(), 200, 2); err != nil {
		t.Fatal(err)
	}
	after := f.Hosts()[0].Seq() + f.Hosts()[1].Seq()
	if after-before < 150 {
		t.Errorf("200 actions made %d events", after-before)
	}
	for _, h := range f.Hosts() {
		c := newChecker(t, h, f.PLCURL())
		c.dial("0")
		c.readUntil(h.Seq())
		c.close()
		c.want(map[string]int{})
	}
}
