package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/syntax"
	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/engine/netguard"
	"github.com/atrelay/relay/internal/testutil"
	"github.com/atrelay/relay/store"
)

// fakePDS is a loopback host that counts describeServer probes. Its
// subscribeRepos is a 404, so the relay's upstream loop just backs off.
type fakePDS struct {
	srv    *httptest.Server
	name   string // localhost:PORT, as requestCrawl names it
	probes atomic.Int64
	hold   chan struct{} // if set, describeServer waits until it is closed
}

func newFakePDS(t *testing.T, hold chan struct{}) *fakePDS {
	t.Helper()
	p := &fakePDS{hold: hold}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/xrpc/com.atproto.server.describeServer" {
			http.NotFound(w, r)
			return
		}
		p.probes.Add(1)
		if p.hold != nil {
			select {
			case <-p.hold:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"did":"did:web:pds.test","availableUserDomains":[]}`))
	}))
	t.Cleanup(p.srv.Close)
	p.name = "localhost:" + strconv.Itoa(p.srv.Listener.Addr().(*net.TCPAddr).Port)
	return p
}

// crawlRelay is a relay with no hosts, on a store in dir, for the
// requestCrawl tests; close it to reopen the same dir.
type crawlRelay struct {
	st  *store.Store
	ids *identity.Resolver
	hub *firehose.Hub
	r   *Relay
}

func openCrawlRelay(t *testing.T, dir string, cfg Config, d Deps) *crawlRelay {
	t.Helper()
	st, err := store.Open(dir, store.Options{BlockCacheBytes: 8 << 20, MemTableBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ids := identity.New(identity.Config{PLCURL: "http://127.0.0.1:1", AllowInsecureHosts: true})
	hub, err := firehose.NewHub(store.FirehoseLog{St: st}, firehose.Config{RingBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	d.Store, d.Identity, d.Hub = st, ids, hub
	r, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	c := &crawlRelay{st: st, ids: ids, hub: hub, r: r}
	t.Cleanup(c.close)
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

// close shuts the relay and its store down; idempotent.
func (c *crawlRelay) close() {
	if c.r == nil {
		return
	}
	_ = c.r.Close()
	c.hub.Close()
	c.ids.Close()
	_ = c.st.Close()
	c.r = nil
}

func (c *crawlRelay) subscribed(name string) bool {
	return c.r.hosts.named(name) != nil
}

// TestCrawlBudgetBeforeProbe checks that a public requestCrawl over the
// new-hosts-per-day budget makes no describeServer request, and that the
// day's count survives a restart (reopened store) and resets the next UTC
// day.
func TestCrawlBudgetBeforeProbe(t *testing.T) {
	dir := t.TempDir()
	clock := testutil.NewClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	cfg := Config{AllowInsecureHosts: true, NewHostsPerDay: 2, Workers: 1}
	a, b, extra := newFakePDS(t, nil), newFakePDS(t, nil), newFakePDS(t, nil)
	ctx := context.Background()

	c := openCrawlRelay(t, dir, cfg, Deps{Now: clock.Now})
	for _, p := range []*fakePDS{a, b} {
		if err := c.r.RequestCrawl(ctx, p.name); err != nil {
			t.Fatalf("requestCrawl %s: %v", p.name, err)
		}
	}
	for i := 0; i < 5; i++ {
		if err := c.r.RequestCrawl(ctx, extra.name); !errors.Is(err, ErrNewHostLimit) {
			t.Fatalf("requestCrawl over the budget: %v, want ErrNewHostLimit", err)
		}
	}
	if n := extra.probes.Load(); n != 0 {
		t.Fatalf("requestCrawl over the budget probed the host %d times, want 0", n)
	}
	if n := c.r.NewHostsToday(); n != 2 {
		t.Fatalf("NewHostsToday = %d, want 2", n)
	}
	// Known, live hosts cost nothing: no probe, no budget.
	if err := c.r.RequestCrawl(ctx, a.name); err != nil || a.probes.Load() != 1 {
		t.Fatalf("requestCrawl of a live host: %v, probes %d (want nil, 1)", err, a.probes.Load())
	}

	c.close()
	c = openCrawlRelay(t, dir, cfg, Deps{Now: clock.Now})
	if err := c.r.RequestCrawl(ctx, extra.name); !errors.Is(err, ErrNewHostLimit) {
		t.Fatalf("after a restart requestCrawl over the budget: %v, want ErrNewHostLimit", err)
	}
	if n := extra.probes.Load(); n != 0 {
		t.Fatalf("after a restart the host was probed %d times, want 0", n)
	}
	if !c.subscribed(a.name) || !c.subscribed(b.name) {
		t.Fatal("hosts added before the restart are not resubscribed")
	}

	clock.Advance(24 * time.Hour)
	if err := c.r.RequestCrawl(ctx, extra.name); err != nil {
		t.Fatalf("requestCrawl the next day: %v", err)
	}
	if n := extra.probes.Load(); n != 1 {
		t.Fatalf("the next day the host was probed %d times, want 1", n)
	}
	if n := c.r.NewHostsToday(); n != 1 {
		t.Fatalf("NewHostsToday on the next day = %d, want 1", n)
	}
}

// TestCrawlNeverRevivesHeldHost checks that an anonymous requestCrawl of a
// host an operator killed or banned (or whose domain is banned) answers an
// error without probing it or changing its state, while an admin
// requestCrawl revives a killed host.
func TestCrawlNeverRevivesHeldHost(t *testing.T) {
	cfg := Config{AllowInsecureHosts: true, Workers: 1}
	killed, banned, domain := newFakePDS(t, nil), newFakePDS(t, nil), newFakePDS(t, nil)
	c := openCrawlRelay(t, t.TempDir(), cfg, Deps{})
	ctx := context.Background()
	for _, p := range []*fakePDS{killed, banned, domain} {
		if err := c.r.RequestCrawl(ctx, p.name); err != nil {
			t.Fatalf("requestCrawl %s: %v", p.name, err)
		}
	}
	if err := c.r.KillUpstream(killed.name); err != nil {
		t.Fatal(err)
	}
	if err := c.r.BanHost(banned.name); err != nil {
		t.Fatal(err)
	}
	if err := c.r.BanDomain(domain.name); err != nil {
		t.Fatal(err)
	}
	check := func(p *fakePDS, want error, status store.HostStatus) {
		t.Helper()
		for i := 0; i < 3; i++ {
			if err := c.r.RequestCrawl(ctx, p.name); !errors.Is(err, want) {
				t.Fatalf("requestCrawl %s: %v, want %v", p.name, err, want)
			}
		}
		h, _ := c.st.HostByName(p.name)
		if h.Status != status || c.subscribed(p.name) {
			t.Fatalf("%s after requestCrawl: status %v, subscribed %v; want %v, not subscribed", p.name, h.Status, c.subscribed(p.name), status)
		}
		if n := p.probes.Load(); n != 1 {
			t.Fatalf("%s probed %d times, want only the first crawl's probe", p.name, n)
		}
	}
	check(killed, ErrHostHeld, store.HostThrottled)
	check(banned, ErrHostBanned, store.HostBanned)
	check(domain, ErrHostBanned, store.HostActive) // the row keeps its status; the domain ban refuses it
	if !errors.Is(ErrHostHeld, ErrHostBanned) {
		t.Fatal("ErrHostHeld must wrap ErrHostBanned: the public API answers it as HostBanned")
	}

	if err := c.r.AdminRequestCrawl(ctx, killed.name); err != nil {
		t.Fatalf("admin requestCrawl of a killed host: %v", err)
	}
	if h, _ := c.st.HostByName(killed.name); h.Status != store.HostActive || !c.subscribed(killed.name) {
		t.Fatalf("admin requestCrawl did not revive the killed host: %v", h.Status)
	}
	if err := c.r.AdminRequestCrawl(ctx, banned.name); !errors.Is(err, ErrHostBanned) {
		t.Fatalf("admin requestCrawl of a banned host: %v, want ErrHostBanned", err)
	}
}

// TestCrawlIdleHostRevives checks that statuses the relay sets on its own
// (idle, offline) still resume on the host's requestCrawl (spec §14.1),
// after a probe and without spending the new-host budget.
func TestCrawlIdleHostRevives(t *testing.T) {
	p := newFakePDS(t, nil)
	c := openCrawlRelay(t, t.TempDir(), Config{AllowInsecureHosts: true, Workers: 1, NewHostsPerDay: 1}, Deps{})
	ctx := context.Background()
	if err := c.r.RequestCrawl(ctx, p.name); err != nil {
		t.Fatal(err)
	}
	for _, st := range []store.HostStatus{store.HostIdle, store.HostOffline} {
		h, _ := c.st.HostByName(p.name)
		if _, err := c.st.UpdateHost(h.ID, func(h *store.Host) { h.Status = st }); err != nil {
			t.Fatal(err)
		}
		c.r.hosts.drop(p.name)
		if err := c.r.RequestCrawl(ctx, p.name); err != nil {
			t.Fatalf("requestCrawl of a %v host: %v", st, err)
		}
		if h, _ := c.st.HostByName(p.name); h.Status != store.HostActive || !c.subscribed(p.name) {
			t.Fatalf("%v host not revived: %v", st, h.Status)
		}
	}
	if n := p.probes.Load(); n != 3 {
		t.Fatalf("probes = %d, want 3 (one per crawl of a host not live)", n)
	}
}

// TestCrawlProbeConcurrency checks that describeServer probes in flight are
// bounded: with MaxConcurrentProbes probes hanging, another requestCrawl is
// refused at once without a request to its host.
func TestCrawlProbeConcurrency(t *testing.T) {
	hold := make(chan struct{})
	slow := []*fakePDS{newFakePDS(t, hold), newFakePDS(t, hold)}
	other := newFakePDS(t, nil)
	c := openCrawlRelay(t, t.TempDir(), Config{AllowInsecureHosts: true, Workers: 1, MaxConcurrentProbes: 2, ProbeTimeout: time.Minute}, Deps{})
	ctx := context.Background()
	errs := make(chan error, len(slow))
	for _, p := range slow {
		go func() { errs <- c.r.RequestCrawl(ctx, p.name) }()
	}
	deadline := time.Now().Add(hangTimeout)
	for slow[0].probes.Load()+slow[1].probes.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the slow probes never arrived")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.r.RequestCrawl(ctx, other.name); !errors.Is(err, ErrProbesBusy) || !errors.Is(err, ErrNewHostLimit) {
		t.Fatalf("requestCrawl with every probe slot taken: %v, want ErrProbesBusy", err)
	}
	if n := other.probes.Load(); n != 0 {
		t.Fatalf("refused requestCrawl probed its host %d times", n)
	}
	close(hold)
	for range slow {
		if err := <-errs; err != nil {
			t.Fatalf("slow requestCrawl: %v", err)
		}
	}
	if err := c.r.RequestCrawl(ctx, other.name); err != nil {
		t.Fatalf("requestCrawl after the probes finished: %v", err)
	}
}

// TestProbeClientPublicOnly checks the default probe client: without the
// development switch it refuses to connect to a loopback describeServer
// (the server sees no request); with it, loopback is allowed.
func TestProbeClientPublicOnly(t *testing.T) {
	p := newFakePDS(t, nil)
	// The relay's default client, as New builds it without the switch.
	c := openCrawlRelay(t, t.TempDir(), Config{Workers: 1}, Deps{})
	err := c.r.hosts.probe(context.Background(), p.name)
	if !errors.Is(err, ErrHostNotFound) || !errors.Is(err, netguard.ErrRefused) {
		t.Fatalf("probe of a loopback host without insecure hosts: %v, want a refused dial", err)
	}
	if n := p.probes.Load(); n != 0 {
		t.Fatalf("guarded probe reached the loopback server %d times", n)
	}
	dev := openCrawlRelay(t, t.TempDir(), Config{Workers: 1, AllowInsecureHosts: true}, Deps{})
	if err := dev.r.hosts.probe(context.Background(), p.name); err != nil {
		t.Fatalf("probe of a loopback host with insecure hosts: %v", err)
	}
}

// TestCrawlRefusesBadHostname checks that requestCrawl normalizes through
// syntax.NormalizeHost without the development switch, and that a refusal
// is ErrBadHostname carrying the syntax reason.
func TestCrawlRefusesBadHostname(t *testing.T) {
	c := openCrawlRelay(t, t.TempDir(), Config{Workers: 1}, Deps{})
	ctx := context.Background()
	for in, reason := range map[string]error{
		"a..b":                   syntax.ErrHostLabel,
		"localhost:2583":         syntax.ErrHostDevOnly,
		"http://pds.example.com": syntax.ErrHostDevOnly,
		"10.0.0.1":               syntax.ErrHostIP,
		"pds.example.com/xrpc":   syntax.ErrHostChar,
	} {
		if err := c.r.AdminRequestCrawl(ctx, in); !errors.Is(err, ErrBadHostname) || !errors.Is(err, reason) {
			t.Errorf("requestCrawl %q: %v, want ErrBadHostname and %v", in, err, reason)
		}
	}
}

// TestHostCapacity checks the MaxHosts bound: past it a public or admin
// requestCrawl is refused before the probe and before the store records
// the host, a restart subscribes at most MaxHosts of the active hosts (the
// rest stay active in the store, for a larger budget), and a dropped host
// frees its place.
func TestHostCapacity(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{AllowInsecureHosts: true, Workers: 1, NewHostsPerDay: 10, MaxHosts: 2}
	a, b, extra := newFakePDS(t, nil), newFakePDS(t, nil), newFakePDS(t, nil)
	ctx := context.Background()

	c := openCrawlRelay(t, dir, cfg, Deps{})
	for _, p := range []*fakePDS{a, b} {
		if err := c.r.RequestCrawl(ctx, p.name); err != nil {
			t.Fatalf("requestCrawl %s: %v", p.name, err)
		}
	}
	for _, admin := range []bool{false, true} {
		err := c.r.hosts.crawl(ctx, extra.name, admin)
		if !errors.Is(err, ErrHostCapacity) || !errors.Is(err, ErrNewHostLimit) {
			t.Fatalf("requestCrawl past MaxHosts (admin %v): %v, want ErrHostCapacity wrapping ErrNewHostLimit", admin, err)
		}
	}
	if n := extra.probes.Load(); n != 0 {
		t.Fatalf("a host past MaxHosts was probed %d times, want 0", n)
	}
	if _, known := c.st.HostByName(extra.name); known {
		t.Fatal("a host past MaxHosts was recorded in the store")
	}
	if got := c.r.m.hostCapacityRefusals.Get(); got != 2 {
		t.Fatalf("relay_host_capacity_refusals_total = %d, want 2", got)
	}
	// A known live host is not a new subscription: still answered.
	if err := c.r.RequestCrawl(ctx, a.name); err != nil {
		t.Fatalf("requestCrawl of a subscribed host at capacity: %v", err)
	}

	// Four active hosts in the store (drop unsubscribes b without
	// demoting it), a restart with room for one.
	c.r.hosts.drop(b.name)
	if err := c.r.RequestCrawl(ctx, extra.name); err != nil {
		t.Fatalf("requestCrawl after a host left: %v", err)
	}
	if _, err := c.st.CreateHost(store.NewHost{Hostname: "spare.localhost:1", Status: store.HostActive}); err != nil {
		t.Fatal(err)
	}
	c.close()
	cfg.MaxHosts = 1
	c = openCrawlRelay(t, dir, cfg, Deps{})
	if n := c.r.hosts.count(); n != 1 {
		t.Fatalf("restart with MaxHosts 1 subscribed %d hosts", n)
	}
	active := 0
	for _, h := range c.st.ListHosts(store.HostNone, 10) {
		if h.Status == store.HostActive {
			active++
		}
	}
	if active != 4 {
		t.Fatalf("%d hosts active in the store after the restart, want 4 (none demoted)", active)
	}
}

// TestHostStateBytes measures the heap one subscribed host takes before
// its connection (hosts on a port nothing listens on: every dial fails and
// backs off) and checks it against HostStateBytes, which the memory
// budget's hosts share is divided by.
func TestHostStateBytes(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("heap measurement: not under -short or -race")
	}
	const n = 2000
	c := openCrawlRelay(t, t.TempDir(), Config{AllowInsecureHosts: true, Workers: 1, MaxHosts: n}, Deps{})
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	hosts := make([]store.Host, n)
	for i := range hosts {
		h, err := c.st.CreateHost(store.NewHost{Hostname: fmt.Sprintf("h%d.localhost:1", i), Status: store.HostActive})
		if err != nil {
			t.Fatal(err)
		}
		hosts[i] = h
	}
	before := heap()
	c.r.hosts.mu.Lock()
	for _, h := range hosts {
		if _, err := c.r.hosts.subscribeLocked(h); err != nil {
			c.r.hosts.mu.Unlock()
			t.Fatal(err)
		}
	}
	c.r.hosts.mu.Unlock()
	time.Sleep(200 * time.Millisecond) // the first dials fail and the hosts wait in backoff
	per := float64(heap()-before) / n
	t.Logf("%.0f bytes per subscribed host before its connection (HostStateBytes %d)", per, HostStateBytes)
	if per > HostStateBytes {
		t.Fatalf("a subscribed host takes %.0f bytes, more than HostStateBytes (%d): the hosts share is exceeded", per, HostStateBytes)
	}
}
