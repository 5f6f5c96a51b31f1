package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestAppendReplayReopen(t *testing.T) {
	fs := vfs.NewMem()
	o := testOptions(fs)
	o.InitialSeq = 1000
	s := openTest(t, o)
	h := mustHost(t, s, "pds.example.com")
	if got := s.NewestSeq(); got != 999 {
		t.Fatalf("fresh NewestSeq = %d, want 999", got)
	}
	if got := s.OldestSeq(); got != SeqNone {
		t.Fatalf("fresh OldestSeq = %d, want SeqNone", got)
	}
	body := []byte("frame")
	evs := []Event{
		{Kind: KindIdentity, DID: did(1), Host: h.ID, Cursor: 1},
		{Kind: KindCommit, DID: did(1), Host: h.ID, Cursor: 2, Rev: rev(1), Commit: []byte("c1"), Data: []byte("d1")},
		{Kind: KindCommit, DID: did(2), Host: h.ID, Cursor: 3, Rev: rev(1), Commit: []byte("c2"), Data: []byte("d2")},
	}
	res, err := appendEvents(s, evs, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Seq != Seq(1000+i) || r.Outcome != Written {
			t.Fatalf("result %d = %+v, want seq %d written", i, r, 1000+i)
		}
	}
	check := func(s *Store) {
		t.Helper()
		seqs, frames := collect(t, s, 0)
		if len(seqs) != 3 || seqs[0] != 1000 || seqs[2] != 1002 {
			t.Fatalf("replayed seqs %v", seqs)
		}
		for i, fr := range frames {
			if frameSeq(t, fr) != seqs[i] || !bytes.HasSuffix(fr, []byte("frame")) {
				t.Fatalf("frame %d = %x", i, fr)
			}
		}
		var a Account
		ok, err := s.GetAccount(did(1), &a)
		if err != nil || !ok {
			t.Fatalf("GetAccount: %v %v", ok, err)
		}
		if string(a.Rev) != string(rev(1)) || string(a.Commit) != "c1" || string(a.Data) != "d1" ||
			a.Host != h.ID || a.UID != 1 || !a.Active() {
			t.Fatalf("account = %+v", a)
		}
		got, _ := s.GetHost(h.ID)
		if got.Cursor != 3 || got.AccountCount != 2 || got.Events != 3 {
			t.Fatalf("host = %+v", got)
		}
		if s.OldestSeq() != 1000 || s.NewestSeq() != 1002 {
			t.Fatalf("bounds %d..%d", s.OldestSeq(), s.NewestSeq())
		}
		accts, err := s.ListAccounts(0, 10)
		if err != nil || len(accts) != 2 || string(accts[0].DID) != string(did(1)) || accts[1].UID != 2 {
			t.Fatalf("ListAccounts = %+v, %v", accts, err)
		}
		if more, _ := s.ListAccounts(1, 10); len(more) != 1 || string(more[0].DID) != string(did(2)) {
			t.Fatalf("ListAccounts(after 1) = %+v", more)
		}
		if seqs, _ := collect(t, s, 1001); len(seqs) != 1 || seqs[0] != 1002 {
			t.Fatalf("replay after 1001 = %v", seqs)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, o)
	defer s.Close()
	check(s)
	res, err = appendEvents(s, evs[:1], body, res[:0])
	if err != nil || res[0].Seq != 1003 {
		t.Fatalf("append after reopen: %+v %v", res, err)
	}
}

func TestConditionalRev(t *testing.T) {
	s := openTest(t, testOptions(vfs.NewMem()))
	defer s.Close()
	h := mustHost(t, s, "a.example")
	var body []byte
	c := func(kind Kind, n int) Event {
		return Event{Kind: kind, DID: did(7), Host: h.ID, Rev: rev(n),
			Commit: []byte{byte(n)}, Data: []byte{byte(n), 'd'}}
	}
	type step struct {
		batch []Event
		want  []Outcome
	}
	steps := []step{
		{[]Event{c(KindCommit, 5)}, []Outcome{Written}},
		{[]Event{c(KindCommit, 5)}, []Outcome{DroppedStale}},
		{[]Event{c(KindCommit, 4)}, []Outcome{DroppedStale}},
		{[]Event{c(KindSync, 5)}, []Outcome{WrittenSameRev}},
		{[]Event{c(KindSync, 4)}, []Outcome{DroppedStale}},
		// Two updates to one DID in one batch see each other.
		{[]Event{c(KindCommit, 7), c(KindCommit, 6), c(KindCommit, 7), c(KindCommit, 8)},
			[]Outcome{Written, DroppedStale, DroppedStale, Written}},
		{[]Event{c(KindSync, 9), {Kind: KindIdentity, DID: did(7)}}, []Outcome{Written, Written}},
	}
	next := Seq(1)
	for i, st := range steps {
		res, err := appendEvents(s, st.batch, body, nil)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		for j, r := range res {
			if r.Outcome != st.want[j] {
				t.Fatalf("step %d event %d: outcome %v, want %v", i, j, r.Outcome, st.want[j])
			}
			if r.Outcome == DroppedStale {
				if r.Seq != SeqNone {
					t.Fatalf("step %d event %d: dropped event got seq %d", i, j, r.Seq)
				}
				continue
			}
			if r.Seq != next {
				t.Fatalf("step %d event %d: seq %d, want %d", i, j, r.Seq, next)
			}
			next++
		}
	}
	var a Account
	if ok, err := s.GetAccount(did(7), &a); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if string(a.Rev) != string(rev(9)) || a.Commit[0] != 9 {
		t.Fatalf("final account rev %s commit %x", a.Rev, a.Commit)
	}
	if seqs, _ := collect(t, s, 0); len(seqs) != int(next-1) {
		t.Fatalf("log has %d events, want %d", len(seqs), next-1)
	}
}

func TestAccountMovesHost(t *testing.T) {
	s := openTest(t, testOptions(vfs.NewMem()))
	defer s.Close()
	a, b := mustHost(t, s, "a.example"), mustHost(t, s, "b.example")
	var body []byte
	if _, err := appendEvents(s, []Event{
		{Kind: KindCommit, DID: did(1), Host: a.ID, Rev: rev(1)},
		{Kind: KindCommit, DID: did(1), Host: b.ID, Rev: rev(2)},
		{Kind: KindAccount, DID: did(1), Host: a.ID, Status: StatusDeactivated},
	}, body, nil); err != nil {
		t.Fatal(err)
	}
	ha, _ := s.GetHost(a.ID)
	hb, _ := s.GetHost(b.ID)
	if ha.AccountCount != 0 || hb.AccountCount != 1 {
		t.Fatalf("counts a=%d b=%d", ha.AccountCount, hb.AccountCount)
	}
	var acct Account
	s.GetAccount(did(1), &acct)
	if acct.Host != b.ID || acct.UpstreamStatus != StatusDeactivated || acct.Active() {
		t.Fatalf("account %+v", acct)
	}
}

func TestAppendRefusesBadInput(t *testing.T) {
	s := openTest(t, testOptions(vfs.NewMem()))
	defer s.Close()
	var body []byte
	long := bytes.Repeat([]byte{'x'}, MaxDIDBytes+1)
	cases := []struct {
		name string
		ev   Event
		want error
	}{
		{"kind", Event{Kind: 9}, ErrBadKind},
		{"did", Event{Kind: KindCommit, DID: long}, ErrTooLong},
		{"rev", Event{Kind: KindCommit, DID: did(1), Rev: long[:MaxRevBytes+1]}, ErrTooLong},
		{"cid", Event{Kind: KindCommit, DID: did(1), Rev: rev(1), Data: long[:MaxCIDBytes+1]}, ErrTooLong},
		{"status", Event{Kind: KindAccount, DID: did(1), Status: 99}, ErrBadStatus},
		{"host", Event{Kind: KindCommit, DID: did(1), Host: 42, Cursor: 1}, ErrNoHost},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := appendEvents(s, []Event{c.ev}, body, nil); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	big := make([]Event, DefaultMaxBatchEvents+1)
	if _, err := appendEvents(s, big, body, nil); !errors.Is(err, ErrBatchTooBig) {
		t.Fatalf("big batch: %v", err)
	}
	// Refused batches wrote nothing, and the store still works.
	if s.NewestSeq() != 0 {
		t.Fatalf("NewestSeq = %d after refusals", s.NewestSeq())
	}
	if res, err := appendEvents(s, []Event{{Kind: KindCommit}}, body, nil); err != nil || res[0].Seq != 1 {
		t.Fatalf("append after refusals: %v %v", res, err)
	}
}

func TestHiddenAfterTakedown(t *testing.T) {
	s := openTest(t, testOptions(vfs.NewMem()))
	defer s.Close()
	var body []byte
	if _, err := appendEvents(s, []Event{
		{Kind: KindCommit, DID: did(1), Rev: rev(1)},
		{Kind: KindCommit, DID: did(2), Rev: rev(1)},
	}, body, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLocalStatus(did(1), LocalTakendown); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLocalStatus(did(99), LocalTakendown); !errors.Is(err, ErrNoAccount) {
		t.Fatalf("unknown account: %v", err)
	}
	// The relay's own #account for the takedown stays visible.
	if _, err := appendEvents(s, []Event{{Kind: KindAccount, DID: did(1)}}, body, nil); err != nil {
		t.Fatal(err)
	}
	if seqs, _ := collect(t, s, 0); len(seqs) != 2 || seqs[0] != 2 || seqs[1] != 3 {
		t.Fatalf("replay with takedown: %v", seqs)
	}
	var a Account
	s.GetAccount(did(1), &a)
	if a.LocalStatus != LocalTakendown || a.Active() {
		t.Fatalf("account %+v", a)
	}
	if err := s.SetLocalStatus(did(1), LocalActive); err != nil {
		t.Fatal(err)
	}
	if seqs, _ := collect(t, s, 0); len(seqs) != 3 {
		t.Fatalf("replay after restore: %v", seqs)
	}
}

func TestHostsAndBans(t *testing.T) {
	fs := vfs.NewMem()
	s := openTest(t, testOptions(fs))
	a := mustHost(t, s, "pds.a.example")
	b := mustHost(t, s, "pds.b.example")
	if _, err := s.CreateHost(NewHost{Hostname: "pds.a.example", Status: HostActive}); !errors.Is(err, ErrHostExists) {
		t.Fatalf("duplicate host: %v", err)
	}
	if _, err := s.UpdateHost(b.ID, func(h *Host) {
		h.Status, h.LastError, h.AccountCount, h.Cursor = HostOffline, "dial: refused", 999, 77
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateHost(123, func(*Host) {}); !errors.Is(err, ErrNoHost) {
		t.Fatalf("unknown host: %v", err)
	}
	for _, d := range []string{"Bad.Example", "evil.test"} {
		if err := s.BanDomain(d); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = openTest(t, testOptions(fs))
	defer s.Close()
	hosts := s.ListHosts(HostNone, 10)
	if len(hosts) != 2 || hosts[0].ID != a.ID || hosts[1].Hostname != "pds.b.example" {
		t.Fatalf("hosts %+v", hosts)
	}
	if hosts[1].Status != HostOffline || hosts[1].LastError != "dial: refused" || hosts[1].AccountCount != 0 || hosts[1].Cursor != 77 {
		t.Fatalf("updated host %+v", hosts[1])
	}
	if h, ok := s.HostByName("pds.b.example"); !ok || h.ID != b.ID {
		t.Fatalf("HostByName %+v %v", h, ok)
	}
	if got := s.ListHosts(a.ID, 10); len(got) != 1 || got[0].ID != b.ID {
		t.Fatalf("ListHosts after a: %+v", got)
	}
	banned := func(name string, want bool) {
		t.Helper()
		if s.IsBanned(name) != want {
			t.Fatalf("IsBanned(%q) = %v", name, !want)
		}
	}
	banned("bad.example", true)
	banned("pds.BAD.example", true)
	banned("example", false)
	banned("notbad.example", false)
	banned("x.y.evil.test", true)
	if err := s.UnbanDomain("evil.test"); err != nil {
		t.Fatal(err)
	}
	banned("x.y.evil.test", false)
	if got := s.Bans(); len(got) != 1 || got[0] != "bad.example" {
		t.Fatalf("Bans = %v", got)
	}
}

func TestSchemaNewerRefused(t *testing.T) {
	fs := vfs.NewMem()
	s := openTest(t, testOptions(fs))
	s.Close()
	db, err := pebble.Open("db", &pebble.Options{FS: fs, Logger: &fatalLogger{s: &Store{}}})
	if err != nil {
		t.Fatal(err)
	}
	db.Set(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion+1), pebble.Sync)
	db.Close()
	if _, err := Open("db", testOptions(fs)); !errors.Is(err, ErrSchema) {
		t.Fatalf("Open newer schema: %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	err := Options{MemTableBytes: 1, ReplayWindow: time.Second, MaxBatchEvents: -1, Sync: 7, SyncInterval: time.Second}.Validate()
	if !errors.Is(err, ErrBadOptions) {
		t.Fatalf("Validate: %v", err)
	}
	for _, field := range []string{"MemTableBytes", "ReplayWindow", "MaxBatchEvents", "Sync ", "SyncInterval"} {
		if !bytes.Contains([]byte(err.Error()), []byte(field)) {
			t.Errorf("Validate error misses %s: %v", field, err)
		}
	}
	if err := (Options{}).Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

// TestSyncIntervalSpacesFsyncs: Append returns only after its fsync, and
// fsyncs are at least SyncInterval apart, so back-to-back Appends take at
// least that long each after the first. (A lower bound: a slow machine can
// only make it longer.)
func TestSyncIntervalSpacesFsyncs(t *testing.T) {
	const interval = 40 * time.Millisecond
	o := testOptions(vfs.NewMem())
	o.SyncInterval = interval
	s := openTest(t, o)
	defer s.Close()
	body := make([]byte, 100)
	start := time.Now()
	for i := 0; i < 4; i++ {
		if _, err := appendEvents(s, []Event{{Kind: KindIdentity, DID: did(i)}}, body, nil); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took < 3*interval {
		t.Fatalf("4 Appends took %v, want at least %v: fsyncs not spaced", took, 3*interval)
	}
}

func TestRetentionWindowAndSeqAtTime(t *testing.T) {
	clk := newFakeClock()
	o := testOptions(vfs.NewMem())
	o.Now = clk.Now
	o.ReplayWindow = time.Hour
	s := openTest(t, o)
	defer s.Close()
	body := make([]byte, 100)
	start := clk.Now()
	// 10 batches of 5 events, 15 minutes apart: seqs 1..50.
	for i := 0; i < 10; i++ {
		batch := make([]Event, 5)
		for j := range batch {
			batch[j] = Event{Kind: KindIdentity, DID: did(j)}
		}
		if _, err := appendEvents(s, batch, body, nil); err != nil {
			t.Fatal(err)
		}
		clk.Advance(15 * time.Minute)
	}
	if seq, ok, err := s.SeqAtTime(start.Add(31 * time.Minute)); err != nil || !ok || seq != 16 {
		t.Fatalf("SeqAtTime(+31m) = %d %v %v, want 16", seq, ok, err)
	}
	if _, ok, _ := s.SeqAtTime(clk.Now()); ok {
		t.Fatal("SeqAtTime(now) found an event")
	}
	// Now is start+150m; the window keeps events committed at or after
	// start+90m: batches 6..9, seqs 31..50.
	n, err := s.RunRetention(context.Background())
	if err != nil || n != 30 {
		t.Fatalf("RunRetention = %d, %v; want 30", n, err)
	}
	if s.OldestSeq() != 31 || s.NewestSeq() != 50 {
		t.Fatalf("bounds %d..%d", s.OldestSeq(), s.NewestSeq())
	}
	if seqs, _ := collect(t, s, 0); len(seqs) != 20 || seqs[0] != 31 {
		t.Fatalf("replay after retention: %d events from %v", len(seqs), seqs[:1])
	}
	if seq, ok, _ := s.SeqAtTime(start); !ok || seq != 31 {
		t.Fatalf("SeqAtTime(before window) = %d %v", seq, ok)
	}
	// Idle past the window: everything goes, seqs continue.
	clk.Advance(2 * time.Hour)
	if n, err := s.RunRetention(context.Background()); err != nil || n != 20 {
		t.Fatalf("second RunRetention = %d, %v", n, err)
	}
	if s.OldestSeq() != SeqNone || s.NewestSeq() != 50 {
		t.Fatalf("empty bounds %d..%d", s.OldestSeq(), s.NewestSeq())
	}
	res, err := appendEvents(s, []Event{{Kind: KindIdentity, DID: did(1)}}, body, nil)
	if err != nil || res[0].Seq != 51 || s.OldestSeq() != 51 {
		t.Fatalf("append after purge: %+v %v oldest %d", res, err, s.OldestSeq())
	}
	if st := s.Stats(); st.RetentionDropped != 50 || st.NewestSeq != 51 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRetentionDiskBudget(t *testing.T) {
	o := testOptions(vfs.NewMem())
	o.DiskBudgetBytes = 1 // always over budget
	s := openTest(t, o)
	defer s.Close()
	body := make([]byte, 1000)
	batch := make([]Event, 100)
	for i := range batch {
		batch[i] = Event{Kind: KindIdentity}
	}
	if _, err := appendEvents(s, batch, body, nil); err != nil {
		t.Fatal(err)
	}
	n, err := s.RunRetention(context.Background())
	if err != nil || n != 10 || s.OldestSeq() != 11 {
		t.Fatalf("budget pass dropped %d (%v), oldest %d", n, err, s.OldestSeq())
	}
}

// TestCrawlDay checks that the requestCrawl counter survives a reopen and
// reads as zero on a fresh database.
func TestCrawlDay(t *testing.T) {
	fs := vfs.NewMem()
	s := openTest(t, testOptions(fs))
	if c, err := s.CrawlDay(); err != nil || c != (CrawlDay{}) {
		t.Fatalf("fresh CrawlDay = %+v, %v", c, err)
	}
	want := CrawlDay{Day: 20_417, Count: 49}
	if err := s.SetCrawlDay(want); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, testOptions(fs))
	defer s.Close()
	if c, err := s.CrawlDay(); err != nil || c != want {
		t.Fatalf("CrawlDay after reopen = %+v, %v; want %+v", c, err, want)
	}
}

// TestCommitChecks: Commit writes nothing for rows that do not match what
// Stage logged or do not continue the log by exactly one seq, releases the
// writer lock either way, and refuses a second Commit of one Staged.
func TestCommitChecks(t *testing.T) {
	s := openTest(t, testOptions(vfs.NewMem()))
	defer s.Close()
	h := mustHost(t, s, "a.example")
	if _, err := appendEvents(s, []Event{{Kind: KindIdentity, DID: did(1)}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	events := []Event{
		{Kind: KindCommit, DID: did(1), Host: h.ID, Cursor: 7, Rev: rev(1)},
		{Kind: KindIdentity, DID: did(2), Host: h.ID, Cursor: 8},
	}
	row := func(seq Seq, frame string) SeqEvent {
		return SeqEvent{Seq: seq, Kind: KindIdentity, DID: did(2), Frame: []byte(frame)}
	}
	bad := func(name string, rows []SeqEvent, want error) {
		t.Helper()
		st, outcomes, err := s.Stage(events, nil)
		if err != nil || len(outcomes) != 2 || outcomes[0] != Written || outcomes[1] != Written {
			t.Fatalf("%s: Stage = %v, %v", name, outcomes, err)
		}
		if err := st.Commit(rows); !errors.Is(err, want) {
			t.Fatalf("%s: Commit = %v, want %v", name, err, want)
		}
		if got := s.NewestSeq(); got != 1 {
			t.Fatalf("%s: NewestSeq = %d after a refused Commit", name, got)
		}
		if hh, _ := s.GetHost(h.ID); hh.Cursor != 0 || hh.AccountCount != 0 {
			t.Fatalf("%s: host %+v changed by a refused Commit", name, hh)
		}
	}
	bad("too few rows", []SeqEvent{row(2, "a")}, ErrRowCount)
	bad("too many rows", []SeqEvent{row(2, "a"), row(3, "b"), row(4, "c")}, ErrRowCount)
	bad("gap before", []SeqEvent{row(3, "a"), row(4, "b")}, ErrSeqGap)
	bad("gap between", []SeqEvent{row(2, "a"), row(4, "b")}, ErrSeqGap)
	bad("reused seq", []SeqEvent{row(1, "a"), row(2, "b")}, ErrSeqOrder)
	bad("empty frame", []SeqEvent{row(2, "a"), row(3, "")}, ErrTooLong)

	st, _, err := s.Stage(events, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit([]SeqEvent{row(2, "a"), row(3, "b")}); err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(nil); !errors.Is(err, ErrNotStaged) {
		t.Fatalf("second Commit = %v, want ErrNotStaged", err)
	}
	if seqs, frames := collect(t, s, 1); len(seqs) != 2 || seqs[1] != 3 || string(frames[1]) != "b" {
		t.Fatalf("log after Commit: %v %q", seqs, frames)
	}
	if hh, _ := s.GetHost(h.ID); hh.Cursor != 8 || hh.AccountCount != 2 { // did(1) moved to h, did(2) new
		t.Fatalf("host after Commit: %+v", hh)
	}
}

// TestListHostsPages: pages of listHosts walk every host once, in id
// order, across a reopen (the top id is rebuilt from the table); a cursor
// at or past the last id, or a limit of 0, gives an empty page.
func TestListHostsPages(t *testing.T) {
	fs := vfs.NewMem()
	s := openTest(t, testOptions(fs))
	for i := range 25 {
		if _, err := s.CreateHost(NewHost{Hostname: fmt.Sprintf("pds%d.example", i), Status: HostActive}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = openTest(t, testOptions(fs))
	defer s.Close()
	if n := len(s.ListHosts(HostNone, 100)); n != 25 {
		t.Fatalf("after a reopen %d hosts listed, want 25", n)
	}
	if _, err := s.CreateHost(NewHost{Hostname: "late.example", Status: HostActive}); err != nil {
		t.Fatal(err)
	}
	var got []string
	after := HostNone
	for {
		page := s.ListHosts(after, 10)
		if len(page) == 0 {
			break
		}
		for _, h := range page {
			if h.ID <= after {
				t.Fatalf("id %d after cursor %d", h.ID, after)
			}
			got = append(got, h.Hostname)
			after = h.ID
		}
	}
	if len(got) != 26 || got[0] != "pds0.example" || got[24] != "pds24.example" || got[25] != "late.example" {
		t.Fatalf("%d hosts listed: %v", len(got), got)
	}
	if p := s.ListHosts(after, 10); len(p) != 0 {
		t.Fatalf("past the last id: %d hosts", len(p))
	}
	if p := s.ListHosts(HostID(math.MaxUint32), 10); len(p) != 0 {
		t.Fatalf("past the largest id: %d hosts", len(p))
	}
	if p := s.ListHosts(HostNone, 0); len(p) != 0 {
		t.Fatalf("limit 0: %d hosts", len(p))
	}
}

// BenchmarkListHosts: one listHosts page of 100 from a table of 10,000
// hosts (the live network has ~2,800; hosts are never deleted).
func BenchmarkListHosts(b *testing.B) {
	s := openTest(b, testOptions(vfs.NewMem()))
	defer s.Close()
	for i := range 10000 {
		if _, err := s.CreateHost(NewHost{Hostname: fmt.Sprintf("pds%d.example", i), Status: HostActive}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if page := s.ListHosts(5000, 100); len(page) != 100 {
			b.Fatalf("%d hosts", len(page))
		}
	}
}
