package relay

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/atrelay/relay/bench/replay"
	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/engine/resync"
	"github.com/atrelay/relay/internal/fixtures"
	"github.com/atrelay/relay/internal/streamtest"
	"github.com/atrelay/relay/store"
	"github.com/gobwas/ws"
)

// harness is one relay with its store, hub and public listener.
type harness struct {
	t     *testing.T
	st    *store.Store
	ids   *identity.Resolver
	hub   *firehose.Hub
	r     *Relay
	srv   *http.Server
	addr  string
	fleet *replay.Fleet // nil for a bench/fleet harness
	rs    *resync.Resyncer
	// hostnames are the hosts crawlAll and waitConnected cover.
	hostnames []string
	// rotated holds, per account whose key a test rotated, its identity
	// before the rotation, for checkStreamBreaks.
	rotated map[string]identity.Identity
}

func startFleet(t *testing.T, gated bool) *replay.Fleet {
	t.Helper()
	fl, err := replay.StartFromShared(context.Background(), fixtures.Path("captures/realpds-2"), replay.Options{Gated: gated})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fl.Close() })
	return fl
}

func testConfig() Config {
	return Config{
		AllowInsecureHosts:  true,
		DefaultAccountLimit: 1000,
		EventsPerSecond:     1e6,
		Workers:             2,
	}
}

func startRelay(t *testing.T, fl *replay.Fleet, dir string, cfg Config, sync store.SyncPolicy) *harness {
	t.Helper()
	h := startRelayPLC(t, fl.PLCURL, fl.Hostnames, dir, cfg, sync, 64<<20, nil)
	h.fleet = fl
	return h
}

// startRelayPLC starts a relay with a real resyncer (fast retries) against
// the PLC at plcURL and a hub ring of ringBytes (small rings make slow
// consumers replay from the store); prepare, if set, runs on the open
// store before the relay starts (to seed hosts).
func startRelayPLC(t *testing.T, plcURL string, hostnames []string, dir string, cfg Config, sync store.SyncPolicy,
	ringBytes int, prepare func(*store.Store)) *harness {
	t.Helper()
	// The fsync spacing relay serve runs with, so the end-to-end and kill -9
	// tests cover what production does.
	st, err := store.Open(dir, store.Options{Sync: sync, SyncInterval: store.DefaultSyncInterval,
		BlockCacheBytes: 8 << 20, MemTableBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(st)
	}
	return startRelayOn(t, st, identity.Config{PLCURL: plcURL, AllowInsecureHosts: true}, hostnames, cfg, ringBytes)
}

// startRelayOn starts a relay like startRelayPLC on an open store, with the
// identity resolver idc configures.
func startRelayOn(t *testing.T, st *store.Store, idc identity.Config, hostnames []string, cfg Config, ringBytes int) *harness {
	t.Helper()
	ids := identity.New(idc)
	hub, err := firehose.NewHub(store.FirehoseLog{St: st}, firehose.Config{RingBytes: ringBytes})
	if err != nil {
		t.Fatal(err)
	}
	var log *slog.Logger
	if os.Getenv("RELAY_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	var r *Relay
	rs, err := resync.New(resync.Config{Identities: ids, AllowInsecureHosts: true, RatePerSecond: 1000, Burst: 100,
		RetryBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		OnResult: func(did string, res resync.Result) { r.OnResyncResult(did, res) }})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ResyncRetryBackoff == 0 {
		cfg.ResyncRetryBackoff, cfg.ResyncMaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	}
	r, err = New(cfg, Deps{Store: st, Identity: ids, Hub: hub, Resyncer: rs, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/xrpc/com.atproto.sync.subscribeRepos", hub)
	h := &harness{t: t, st: st, ids: ids, hub: hub, r: r, rs: rs, srv: &http.Server{Handler: mux}, addr: ln.Addr().String(),
		hostnames: hostnames}
	go func() { _ = h.srv.Serve(ln) }()
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h
}

// stop shuts the harness down gracefully.
func (h *harness) stop() {
	h.rs.Close()
	if err := h.r.Close(); err != nil {
		h.t.Errorf("relay close: %v", err)
	}
	h.hub.Close()
	_ = h.srv.Close()
	h.ids.Close()
	if err := h.st.Close(); err != nil {
		h.t.Errorf("store close: %v", err)
	}
}

func (h *harness) crawlAll() {
	h.t.Helper()
	for _, name := range h.hostnames {
		if err := h.r.RequestCrawl(context.Background(), name); err != nil {
			h.t.Fatalf("requestCrawl %s: %v", name, err)
		}
	}
	h.waitConnected()
}

// waitConnected waits until every subscribed host has a connection, so a
// gated fleet released afterwards reaches the relay live.
func (h *harness) waitConnected() {
	h.t.Helper()
	deadline := time.Now().Add(hangTimeout)
	for _, name := range h.hostnames {
		for {
			hs := h.r.hosts.named(name)
			if hs != nil && hs.up.Load().Connected() {
				break
			}
			if time.Now().After(deadline) {
				h.t.Fatalf("host %s never connected", name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// waitCaughtUp waits until every fleet host's persisted cursor reached its
// last seq, failing after a generous deadline (a hang, not a speed check).
// The persisted cursor is written in the same batch as the host's events,
// so everything up to it is in the log; the in-memory low-water mark moves
// before the batch commits.
func (h *harness) waitCaughtUp() {
	h.t.Helper()
	deadline := time.Now().Add(hangTimeout)
	for _, fh := range h.fleet.Replay.Hosts() {
		for {
			hs := h.r.hosts.named(fh.Name)
			if sh, ok := h.st.HostByName(fh.Name); ok && int64(sh.Cursor) >= fh.LastSeq {
				break
			}
			if time.Now().After(deadline) {
				h.t.Logf("losses: %v", h.losses())
				if hs != nil {
					h.t.Logf("tracker low %d last %d newest %d", hs.tr.lowWater(), hs.tr.lastSeq(), h.st.NewestSeq())
				}
				h.t.Fatalf("host %s did not catch up to seq %d", fh.Name, fh.LastSeq)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// consumer collects every frame a subscribeRepos connection delivers.
type consumer struct{ *streamtest.Collector }

// dialConsumer subscribes to the relay at addr from cursor (-1: no
// cursor) and collects every frame from the first.
func dialConsumer(t *testing.T, addr string, cursor int64) *consumer {
	t.Helper()
	return dialConsumerWith(t, ws.Dialer{}, addr, cursor, nil)
}

// dialConsumerWith is dialConsumer through d, whose reader waits for gate
// to close before its first read (nil: it reads at once).
func dialConsumerWith(t *testing.T, d ws.Dialer, addr string, cursor int64, gate <-chan struct{}) *consumer {
	t.Helper()
	conn, src := streamtest.Dial(t, d, subscribeURL(addr, cursor))
	return &consumer{streamtest.Collect(t, conn, src, gate)}
}

// subscribeURL is the relay's subscribeRepos at addr from cursor (-1: no
// cursor).
func subscribeURL(addr string, cursor int64) string {
	u := "ws://" + addr + "/xrpc/com.atproto.sync.subscribeRepos"
	if cursor >= 0 {
		u += "?cursor=" + strconv.FormatInt(cursor, 10)
	}
	return u
}

// wsStream is a dialed WebSocket connection to read and write, reading
// first what the dialer had buffered: frames sent right after the 101 may
// already sit in br.
func wsStream(conn net.Conn, br *bufio.Reader) io.ReadWriter {
	if br == nil {
		return conn
	}
	return struct {
		io.Reader
		io.Writer
	}{io.MultiReader(br, conn), conn}
}

// waitFrames waits until the consumer holds n frames (deadline as above).
func (c *consumer) waitFrames(t *testing.T, n int) [][]byte {
	t.Helper()
	return c.Wait(t, n, hangTimeout)
}

// finalState is the capture's final-state.json.
type finalState struct {
	Accounts map[string]struct {
		Rev    string  `json:"rev"`
		CID    string  `json:"cid"`
		Data   string  `json:"data"`
		Active bool    `json:"active"`
		Status *string `json:"status"`
	} `json:"accounts"`
}

func readFinalState(t *testing.T) finalState {
	t.Helper()
	b, err := os.ReadFile(fixtures.Path("captures/realpds-2/final-state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fs finalState
	if err := json.Unmarshal(b, &fs); err != nil {
		t.Fatal(err)
	}
	return fs
}

var testEpoch = time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC)

// hangTimeout bounds every wait in these tests. It only turns a hang into a
// failure: the race detector on a loaded 2-core machine makes the pipeline
// ten times slower, and no speed is asserted here.
const hangTimeout = 3 * time.Minute

// losses returns the frames the relay dropped or rejected, by label.
func (h *harness) losses() map[string]uint64 {
	out := map[string]uint64{}
	for r := DropReason(0); r < numDropReasons; r++ {
		if n := h.r.m.dropped[r].Get(); n != 0 {
			out["dropped "+r.String()] = n
		}
	}
	for label, c := range h.r.m.rejected {
		if n := c.Get(); n != 0 {
			out["rejected "+label] = n
		}
	}
	return out
}

// noLosses fails t for each kind of frame the relay dropped or rejected.
func (h *harness) noLosses(t *testing.T) {
	t.Helper()
	for label, n := range h.losses() {
		t.Errorf("%s: %d", label, n)
	}
}
