package migrate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/relay/internal/storetest"
	"github.com/atrelay/relay/store"
)

const (
	refNext   = 5_123_456_789 // the fake reference's next seq
	refNextPr = "5.123456789e+09"
)

// seedRef fills f with one host of every kind, bans and 620 takedowns
// (two pages), and returns the takedown DIDs.
func seedRef(f *fakeRef) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hosts = []refHost{
		{ID: 1, Hostname: "morel.us-east.host.bsky.network", Status: "active", LastSeq: 912345678, AccountLimit: 10_000_000, AccountCount: 500_000},
		{ID: 2, Hostname: "pds.example.com", Status: "active", LastSeq: 55, AccountLimit: 5000, AccountCount: 3},
		{ID: 3, Hostname: "blocked.example.com", Status: "banned", LastSeq: -1, AccountLimit: 100},
		{ID: 4, Hostname: "sleepy.example.com", Status: "offline", LastSeq: 7, AccountLimit: 100, AccountCount: 1},
		{ID: 5, Hostname: "never.example.com", Status: "idle", LastSeq: -1, AccountLimit: 100},
		{ID: 6, Hostname: "localhost:2583", NoSSL: true, Status: "active", LastSeq: 12, AccountLimit: 100},
		{ID: 7, Hostname: "10.0.0.1", Status: "idle", LastSeq: -1, AccountLimit: 100},
		{ID: 8, Hostname: "throttled.example.com", Status: "throttled", LastSeq: 3, AccountLimit: 20},
	}
	f.bans = []string{"evil.example", "Spam.Example"}
	f.takedowns = make([]string, 620)
	for i := range f.takedowns {
		f.takedowns[i] = fmt.Sprintf("did:plc:%024d", i)
	}
	f.takedowns[17] = "not-a-did"
	f.nextSeq = refNextPr
	return slices.Clone(f.takedowns)
}

// run runs RunCLI against the fake reference and returns its output.
func run(t *testing.T, ts string, dir string, extra ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	args := append([]string{"--from", ts, "--from-metrics", ts, "--from-password", "ref-secret", "--data-dir", dir}, extra...)
	err := RunCLI(args, &out)
	return out.String(), err
}

func openTestStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(dir, store.Options{BlockCacheBytes: 8 << 20, MemTableBytes: 4 << 20, RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestMigrateIntoFreshStore(t *testing.T) {
	f, ts := newFakeRef(t)
	takedowns := seedRef(f)
	dir := filepath.Join(t.TempDir(), "data")

	// Dry run: the plan, and nothing written (not even the directory).
	out, err := run(t, ts.URL, dir, "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	for _, want := range []string{
		"reference relay: next seq 5123456789",
		"this relay:      next seq 1 -> 5133456789",
		"hosts:           7 to create, 0 to update, 0 unchanged; 3 active",
		"domain bans:     2 to add",
		"takedowns:       619 to add",
		`skipped: host "10.0.0.1"`,
		`skipped: takedown of "not-a-did"`,
		"warning: host localhost:2583 is a development host",
		"create host morel.us-east.host.bsky.network status=active trusted=true account-limit=10000000 cursor=912345678",
		"create host sleepy.example.com status=offline trusted=false account-limit=100 cursor=7",
		"create host never.example.com status=idle trusted=false account-limit=100 cursor=0",
		"ban domain spam.example",
		"take down did:plc:000000000000000000000619",
		"dry run: nothing written",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Fatalf("output:\n%s", out)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dry run created %s: %v", dir, err)
	}

	out, err = run(t, ts.URL, dir)
	if err != nil || !strings.Contains(out, "done: 7 hosts created, 0 updated, 2 domain bans, 619 takedowns (619 new accounts), next seq 5133456789") {
		t.Fatalf("migration: %v\n%s", err, out)
	}

	st := openTestStore(t, dir)
	want := map[string]store.Host{
		"morel.us-east.host.bsky.network": {Status: store.HostActive, Trusted: true, AccountLimit: 10_000_000, Cursor: 912345678},
		"pds.example.com":                 {Status: store.HostActive, AccountLimit: 5000, Cursor: 55},
		"blocked.example.com":             {Status: store.HostBanned, AccountLimit: 100},
		"sleepy.example.com":              {Status: store.HostOffline, AccountLimit: 100, Cursor: 7},
		"never.example.com":               {Status: store.HostIdle, AccountLimit: 100},
		"localhost:2583":                  {Status: store.HostActive, AccountLimit: 100, Cursor: 12},
		"throttled.example.com":           {Status: store.HostThrottled, AccountLimit: 20, Cursor: 3},
	}
	if hosts := st.ListHosts(store.HostNone, 100); len(hosts) != len(want) {
		t.Fatalf("%d hosts in the store, want %d", len(hosts), len(want))
	}
	for name, w := range want {
		h, ok := st.HostByName(name)
		if !ok || h.Status != w.Status || h.Trusted != w.Trusted || h.AccountLimit != w.AccountLimit || h.Cursor != w.Cursor {
			t.Errorf("host %s = %+v, want %+v", name, h, w)
		}
	}
	if !slices.Equal(st.Bans(), []string{"evil.example", "spam.example"}) || !st.IsBanned("pds.evil.example") {
		t.Errorf("bans = %v", st.Bans())
	}
	var a store.Account
	for i, did := range takedowns {
		ok, err := st.GetAccount([]byte(did), &a)
		if i == 17 {
			if ok {
				t.Errorf("invalid DID %q was imported", did)
			}
			continue
		}
		if err != nil || !ok || a.LocalStatus != store.LocalTakendown {
			t.Fatalf("takedown %s: %+v %v %v", did, a, ok, err)
		}
	}
	if got := st.NewestSeq(); got != refNext+DefaultSeqMargin-1 {
		t.Fatalf("NewestSeq = %d, want %d", got, refNext+DefaultSeqMargin-1)
	}
	// The first event this relay logs gets the planned seq.
	h, _ := st.HostByName("pds.example.com")
	seqs, err := storetest.Append(st, []store.Event{{Kind: store.KindIdentity, DID: []byte("did:plc:zzzzzzzzzzzzzzzzzzzzzzzz"),
		Host: h.ID, Cursor: 56}}, func(_ int, seq store.Seq) []byte { return fmt.Appendf(nil, "frame %d", seq) })
	if err != nil || seqs[0] != refNext+DefaultSeqMargin {
		t.Fatalf("first Append: %v %v", seqs, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Running it again on the now-used database is refused; allowed, it
	// changes nothing but the hosts' cursors back to the reference's.
	if _, err := run(t, ts.URL, dir); err == nil || !strings.Contains(err.Error(), "already holds events") {
		t.Fatalf("second run on a used database: %v", err)
	}
	out, err = run(t, ts.URL, dir, "--allow-used-database")
	if err != nil || !strings.Contains(out, "hosts:           0 to create, 1 to update, 6 unchanged") ||
		!strings.Contains(out, "update host pds.example.com status=active trusted=false account-limit=5000 cursor=55 (was status=active trusted=false account-limit=5000 cursor=56)") ||
		!strings.Contains(out, "takedowns:       0 to add") || !strings.Contains(out, "domain bans:     0 to add") ||
		!strings.Contains(out, "(already above the reference's)") {
		t.Fatalf("second run: %v\n%s", err, out)
	}
}

func TestMigrateUpdatesExistingHosts(t *testing.T) {
	f, ts := newFakeRef(t)
	seedRef(f)
	dir := t.TempDir()
	st := openTestStore(t, dir)
	// A host this relay already knows (from a seed list, say), with other
	// limits and no cursor, and an account it already has taken down.
	h, err := st.CreateHost(store.NewHost{Hostname: "pds.example.com", Status: store.HostIdle, AccountLimit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportTakedown([]byte("did:plc:000000000000000000000003")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AdvanceSeq(refNext + 2*DefaultSeqMargin); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, ts.URL, dir, "--trusted-domains", "pds.example.com, *.nope", "--seq-margin", "5")
	if err != nil || !strings.Contains(out, "6 to create, 1 to update") || !strings.Contains(out, "takedowns:       618 to add") ||
		!strings.Contains(out, "(already above the reference's)") {
		t.Fatalf("migration: %v\n%s", err, out)
	}
	st = openTestStore(t, dir)
	defer st.Close()
	got, _ := st.GetHost(h.ID)
	if got.Status != store.HostActive || !got.Trusted || got.AccountLimit != 5000 || got.Cursor != 55 {
		t.Fatalf("updated host = %+v", got)
	}
	if m, _ := st.HostByName("morel.us-east.host.bsky.network"); m.Trusted {
		t.Fatalf("host trusted by the default pattern although --trusted-domains replaced it: %+v", m)
	}
	if st.NewestSeq() != refNext+2*DefaultSeqMargin-1 {
		t.Fatalf("seq moved backwards: %d", st.NewestSeq())
	}
}

func TestMigrateListBeyondReferenceMaximum(t *testing.T) {
	f, ts := newFakeRef(t)
	seedRef(f)
	f.mu.Lock()
	f.listMax = 2 // pds/list stops after 2 hosts, as the real one does after 10,000
	f.mu.Unlock()
	src, err := Fetch(context.Background(), FetchConfig{URL: ts.URL, MetricsURL: ts.URL, Password: "ref-secret", ListMax: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !src.ListTruncated || src.NextSeq != refNext {
		t.Fatalf("source: truncated %v, next seq %d", src.ListTruncated, src.NextSeq)
	}
	// Hosts 1-2 from pds/list; of the rest, those with events come from
	// listHosts with their exact status and cursor, limit unknown.
	var names []string
	for _, h := range src.Hosts {
		names = append(names, h.Hostname)
		if h.Hostname == "sleepy.example.com" && (h.Status != "offline" || h.Cursor != 7 || h.AccountLimit != -1) {
			t.Errorf("sleepy = %+v", h)
		}
	}
	if want := []string{"morel.us-east.host.bsky.network", "pds.example.com", "sleepy.example.com", "localhost:2583", "throttled.example.com"}; !slices.Equal(names, want) {
		t.Fatalf("hosts %v, want %v", names, want)
	}
	p, err := NewPlan(src, nil, PlanConfig{DefaultAccountLimit: 77})
	if err != nil {
		t.Fatal(err)
	}
	if p.Hosts[2].To.AccountLimit != 77 || !strings.Contains(strings.Join(p.Warnings, "\n"), "10,000-host maximum") {
		t.Fatalf("plan: %+v %v", p.Hosts[2], p.Warnings)
	}
}

func TestMigrateFetchErrors(t *testing.T) {
	f, ts := newFakeRef(t)
	seedRef(f)
	ctx := context.Background()
	_, err := Fetch(ctx, FetchConfig{URL: ts.URL, Password: "wrong"})
	if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "wrong admin password") {
		t.Fatalf("wrong password: %v", err)
	}
	f.mu.Lock()
	f.nextSeq = ""
	f.mu.Unlock()
	_, err = Fetch(ctx, FetchConfig{URL: ts.URL, MetricsURL: ts.URL, Password: "ref-secret"})
	if !errors.Is(err, ErrNoSeq) {
		t.Fatalf("metrics without the gauge: %v", err)
	}
	for _, bad := range []string{"-1", "1.5", "NaN", "1e300"} {
		f.mu.Lock()
		f.nextSeq = bad
		f.mu.Unlock()
		if _, err = Fetch(ctx, FetchConfig{URL: ts.URL, MetricsURL: ts.URL, Password: "ref-secret"}); !errors.Is(err, ErrSource) {
			t.Errorf("gauge %q: %v", bad, err)
		}
	}
	// Without metrics the seq must be given: --from-seq.
	src, err := Fetch(ctx, FetchConfig{URL: ts.URL, Password: "ref-secret"})
	if err != nil || src.NextSeq != 0 {
		t.Fatalf("no metrics URL: %v %d", err, src.NextSeq)
	}
	if _, err := NewPlan(src, nil, PlanConfig{}); !errors.Is(err, ErrNoNextSeq) {
		t.Fatalf("plan without a seq: %v", err)
	}
	if _, err := NewPlan(src, nil, PlanConfig{NextSeq: uint64(store.MaxSeq)}); !errors.Is(err, ErrSeqRange) {
		t.Fatalf("plan beyond MaxSeq: %v", err)
	}
	var out strings.Builder
	err = RunCLI([]string{"--from", ts.URL, "--from-password", "ref-secret", "--from-seq", "900", "--seq-margin", "100",
		"--data-dir", t.TempDir()}, &out)
	if err != nil || !strings.Contains(out.String(), "next seq 1 -> 1000") {
		t.Fatalf("--from-seq: %v\n%s", err, out.String())
	}
	for _, args := range [][]string{{}, {"--from", ts.URL, "extra"}, {"--bogus"}} {
		if err := RunCLI(args, &out); !errors.Is(err, ErrUsage) {
			t.Errorf("%v: %v", args, err)
		}
	}
}

func TestTrustedName(t *testing.T) {
	pats := []string{"*.host.bsky.network", "exact.example.com", "*"}
	f := func(name string, pats []string, want bool) {
		t.Helper()
		if got := trustedName(name, pats); got != want {
			t.Errorf("trustedName(%q, %v) = %v, want %v", name, pats, got, want)
		}
	}
	f("morel.us-east.host.bsky.network", pats, true)
	f("host.bsky.network", pats, false)
	f("exact.example.com", pats, true)
	f("sub.exact.example.com", pats, false)
	f("other.example.com", pats, false)
	f("x.host.bsky.network", []string{}, false)
}
