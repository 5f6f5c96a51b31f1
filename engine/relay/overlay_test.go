package relay

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"
	"github.com/atrelay/relay/engine/atproto/syntax"
	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/engine/verify"
	"github.com/atrelay/relay/internal/storetest"
	"github.com/atrelay/relay/store"
	"github.com/valyala/bytebufferpool"
)

// overlayDID returns a distinct did:plc for i.
func overlayDID(i int) []byte {
	const base32 = "abcdefghijklmnopqrstuvwxyz234567"
	b := append(make([]byte, 0, 32), "did:plc:"...)
	for range 24 {
		b = append(b, base32[i%32])
		i /= 32
	}
	return b
}

// overlayRow returns account i's row as the store has it after a commit:
// a TID rev and two 36-byte CIDs (distinct per i).
func overlayRow(i int) store.Account {
	c := []byte{1, 0x71, 0x12, 0x20, byte(i), byte(i >> 8), byte(i >> 16), 31: 0, 35: 0}
	d := append([]byte(nil), c...)
	d[7] = 1
	return store.Account{DID: overlayDID(i), Host: 1, UpstreamStatus: store.StatusActive, LocalStatus: store.LocalActive,
		Rev: []byte("3lbcdefghijkl"), Commit: c, Data: d}
}

// overlayWorkers is an accountWorkers with what load and finish use.
func overlayWorkers(st *store.Store, overlayBytes int64) *accountWorkers {
	return &accountWorkers{cfg: &Config{OverlayBytes: overlayBytes, Workers: 1}, st: st,
		durable: make([]atomic.Uint64, 1), overlayBytes: make([]atomic.Int64, 1)}
}

// TestOverlayAllocs pins an overlay entry at two heap objects (the struct
// and its buffer): loading an account from the store allocates two beyond
// what the store's read does (five before the single buffer), and an
// accepted commit updates its entry without allocating.
func TestOverlayAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	st := storetest.Open(t)
	h := storetest.Host(t, st, "pds.example")
	row := overlayRow(1)
	ev := store.Event{Kind: store.KindCommit, DID: row.DID, Host: h.ID, Rev: row.Rev, Commit: row.Commit, Data: row.Data,
		Status: store.StatusActive}
	if _, err := storetest.Append(st, []store.Event{ev}, func(int, store.Seq) []byte { return []byte("x") }); err != nil {
		t.Fatal(err)
	}
	w := overlayWorkers(st, DefaultOverlayBytes)
	s := w.newScratch(0)
	var acct store.Account
	read := testing.AllocsPerRun(100, func() { _, _ = st.GetAccount(row.DID, &acct) })
	load := testing.AllocsPerRun(100, func() {
		delete(s.overlay.m, string(row.DID))
		if a, err := w.load(&s, row.DID); err != nil || !a.known {
			t.Fatalf("load: %v", err)
		}
	})
	t.Logf("load of a stored account: %v allocations (the store's read: %v)", load, read)
	if entry := load - read; entry > 2 {
		t.Errorf("loading a stored account allocates %v objects for its entry (load %v, store read %v), want 2", entry, load, read)
	}

	a, err := w.load(&s, row.DID)
	if err != nil {
		t.Fatal(err)
	}
	next := overlayRow(2)
	ns := verify.State{Rev: []byte("3lbcdefghijkm"), Commit: next.Commit, Data: next.Data}
	hs := &hostState{id: h.ID}
	out := &bytebufferpool.ByteBuffer{B: make([]byte, 0, 1024)}
	var res result
	update := testing.AllocsPerRun(100, func() {
		out.B = append(out.B[:0], "frame"...)
		w.finish(&s, hs, a, &res, out, store.KindCommit, ns, store.StatusUnchanged)
	})
	if update != 0 {
		t.Errorf("an accepted commit allocates %v objects updating its entry, want 0", update)
	}
	if !bytes.Equal(a.rev(), ns.Rev) || !bytes.Equal(a.commit(), ns.Commit) || !bytes.Equal(a.data(), ns.Data) {
		t.Errorf("entry after the commit: rev %q commit %x data %x", a.rev(), a.commit(), a.data())
	}
	if !bytes.Equal(res.ev.Rev, ns.Rev) || string(res.ev.DID) != string(row.DID) || !bytes.Equal(res.ev.Data, ns.Data) {
		t.Errorf("store event: did %q rev %q data %x", res.ev.DID, res.ev.Rev, res.ev.Data)
	}
}

// TestOverlayBytesEstimate fills an overlay and checks that the heap it
// takes per entry is within the estimate the bound counts (entryBytes),
// and not far below it.
func TestOverlayBytesEstimate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation sizes")
	}
	if size := unsafe.Sizeof(acctState{}); size > acctStateBytes || size <= 48 {
		t.Fatalf("acctState is %d bytes: acctStateBytes (%d) is no longer its size class", size, acctStateBytes)
	}
	const n = 50_000
	rows := make([]store.Account, n)
	for i := range rows {
		rows[i] = overlayRow(i)
	}
	best := int64(1 << 62)
	var est int64
	for range 3 {
		var gauge atomic.Int64
		o := newOverlay(1<<40, &gauge)
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		for i := range rows {
			o.add(rows[i].DID, &rows[i], true, 0)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		runtime.KeepAlive(o.m)
		best = min(best, int64(m1.HeapAlloc-m0.HeapAlloc)/n)
		est = o.bytes / n
		if gauge.Load() != o.bytes {
			t.Fatalf("published %d bytes, overlay counts %d", gauge.Load(), o.bytes)
		}
	}
	t.Logf("%d entries: %d heap bytes per entry, estimate %d", n, best, est)
	if best > est || best < est*3/4 {
		t.Errorf("heap per entry %d bytes, estimate %d: the estimate (overlay.go) is off", best, est)
	}
}

// TestOverlayEvictsByBytes checks the byte bound: durable entries are
// evicted an eighth under it, entries not yet durable are kept even over
// it, and a state that outgrows its buffer moves it with the map's key.
func TestOverlayEvictsByBytes(t *testing.T) {
	var gauge atomic.Int64
	row := overlayRow(0)
	per := entryBytes(&acctState{buf: newStateBuf(row.DID, len(row.Rev)+len(row.Commit)+len(row.Data))})
	limit := 16 * per
	o := newOverlay(limit, &gauge)
	check := func(what string) {
		t.Helper()
		var sum int64
		for k, a := range o.m {
			if k != a.did() {
				t.Fatalf("%s: key %q holds the entry of %q", what, k, a.did())
			}
			sum += entryBytes(a)
		}
		if sum != o.bytes || gauge.Load() != o.bytes {
			t.Fatalf("%s: entries take %d bytes, overlay counts %d, published %d", what, sum, o.bytes, gauge.Load())
		}
	}

	// 32 entries not yet durable (tickets 1..32, durable mark 0): all kept.
	for i := range 32 {
		row := overlayRow(i)
		o.add(row.DID, &row, true, 0).ticket = uint64(i + 1)
	}
	check("not durable")
	if len(o.m) != 32 || o.bytes <= limit {
		t.Fatalf("%d entries, %d bytes: entries not yet durable were evicted (bound %d)", len(o.m), o.bytes, limit)
	}
	if !o.stuck || o.rescanAt == 0 {
		t.Fatalf("stuck %v, rescan at %d: the scans found nothing durable, the next must wait for the mark to move", o.stuck, o.rescanAt)
	}

	// Durable through ticket 24: the next add evicts durable entries only,
	// down to an eighth under the bound.
	row = overlayRow(100)
	o.add(row.DID, &row, true, 24).ticket = 100
	check("evicted")
	for i := 24; i < 32; i++ {
		if o.get(overlayDID(i)) == nil {
			t.Fatalf("entry of ticket %d (not durable) was evicted", i+1)
		}
	}
	if want := limit - limit/8 + per; o.bytes > want {
		t.Fatalf("%d bytes after eviction, want at most %d", o.bytes, want)
	}
	if o.stuck {
		t.Fatal("still stuck after an eviction that reached its target")
	}

	// A state larger than the buffer's room moves the entry to a new one.
	a := o.get(overlayDID(30))
	before := cap(a.buf)
	long := bytes.Repeat([]byte{7}, 300)
	o.setState(a, []byte("3lbcdefghijkz"), long, long)
	check("grown")
	if cap(a.buf) <= before || o.get(overlayDID(30)) != a || a.did() != string(overlayDID(30)) || !bytes.Equal(a.data(), long) {
		t.Fatalf("grown entry: cap %d (was %d), did %q, found %v", cap(a.buf), before, a.did(), o.get(overlayDID(30)) == a)
	}

	// A new account keeps room for its first commit.
	newDID := overlayDID(200)
	b := o.add(newDID, nil, false, 0)
	capBefore := cap(b.buf)
	o.setState(b, row.Rev, row.Commit, row.Data)
	if cap(b.buf) != capBefore || b.known || b.local != store.LocalActive {
		t.Fatalf("new account: buffer %d → %d, known %v local %v", capBefore, cap(b.buf), b.known, b.local)
	}
	check("new account")
}

// TestOverlayBytesGauge checks relay_overlay_bytes: an account action on
// an unknown account loads (and keeps) one overlay entry.
func TestOverlayBytesGauge(t *testing.T) {
	st := storetest.Open(t)
	hub, err := firehose.NewHub(store.FirehoseLog{St: st}, firehose.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	set := metrics.NewSet()
	r, err := New(Config{Workers: 2}, Deps{Store: st, Identity: identity.New(identity.Config{}), Hub: hub, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	did := overlayDID(7)
	if syntax.CheckDID(did) != nil {
		t.Fatalf("test DID %q does not parse", did)
	}
	if err := r.Takedown(context.Background(), string(did)); !errors.Is(err, ErrUnknownAccount) {
		t.Fatalf("Takedown of an unknown account: %v", err)
	}
	var sb strings.Builder
	set.WritePrometheus(&sb)
	want := entryBytes(&acctState{buf: newStateBuf(did, 0)})
	if line := "relay_overlay_bytes " + strconv.FormatInt(want, 10) + "\n"; !strings.Contains(sb.String(), line) {
		t.Fatalf("metrics lack %q", line)
	}
}

// TestOverlayStuckStaysBounded: an overlay over its bound with nothing
// durable (stuck) does not rescan its map on every add, yet an entry
// loaded for a frame that changed nothing (its ticket left at 0, durable
// already) is still forgotten, one add later: a host sending rejected
// frames for ever new accounts cannot grow the overlay while it waits.
// Nor does it scan again for every small move of the mark: it waits for
// the mark to reach a ticket enough entries are at or below.
func TestOverlayStuckStaysBounded(t *testing.T) {
	var gauge atomic.Int64
	row := overlayRow(0)
	per := entryBytes(&acctState{buf: newStateBuf(row.DID, len(row.Rev)+len(row.Commit)+len(row.Data))})
	o := newOverlay(16*per, &gauge)
	for i := range 32 {
		row := overlayRow(i)
		o.add(row.DID, &row, true, 5).ticket = uint64(i + 10) // above the mark
	}
	if !o.stuck || len(o.m) != 32 {
		t.Fatalf("stuck %v with %d entries, want stuck with all 32", o.stuck, len(o.m))
	}
	for i := 100; i < 300; i++ {
		row := overlayRow(i)
		o.add(row.DID, &row, true, 5) // rejected: ticket stays 0
	}
	if len(o.m) != 33 || o.get(overlayDID(299)) == nil {
		t.Fatalf("%d entries after 200 loads that changed nothing, want the 32 not durable and the last load", len(o.m))
	}
	// One accepted: its entry is not durable and stays.
	row = overlayRow(300)
	o.add(row.DID, &row, true, 5).ticket = 60
	row = overlayRow(301)
	o.add(row.DID, &row, true, 5)
	if o.get(overlayDID(300)) == nil || len(o.m) != 34 {
		t.Fatalf("%d entries; the accepted account's entry found: %v", len(o.m), o.get(overlayDID(300)) != nil)
	}
	// The mark moving short of rescanAt scans nothing; reaching it, the
	// overlay forgets what is durable by then.
	at := o.rescanAt
	if at <= 5 || at > 41 {
		t.Fatalf("rescan at %d: want a ticket above the mark (5) among the entries (10..41)", at)
	}
	row = overlayRow(302)
	o.add(row.DID, &row, true, at-1).ticket = 61
	if o.get(overlayDID(int(at)-10-1)) == nil || !o.stuck {
		t.Fatalf("the mark moved to %d, short of %d, yet the overlay scanned", at-1, at)
	}
	row = overlayRow(303)
	o.add(row.DID, &row, true, 40)
	if o.get(overlayDID(300)) == nil || o.get(overlayDID(302)) == nil || len(o.m) > 16 {
		t.Fatalf("%d entries after the mark reached 40 (bound 16 entries)", len(o.m))
	}
	var sum int64
	for _, a := range o.m {
		sum += entryBytes(a)
	}
	if sum != o.bytes || gauge.Load() != o.bytes {
		t.Fatalf("entries take %d bytes, overlay counts %d, published %d", sum, o.bytes, gauge.Load())
	}
}

// TestOverlayRescanAtSample: with more entries left than the sample
// holds, rescanAt is about the ticket at or below which lie the share of
// entries the overlay must forget to get back to its target.
func TestOverlayRescanAtSample(t *testing.T) {
	var gauge atomic.Int64
	o := newOverlay(1<<40, &gauge)
	const n = 4000
	for i := range n {
		row := overlayRow(i)
		o.add(row.DID, &row, true, 0).ticket = uint64(i + 1)
	}
	o.limit = o.bytes * 6 / 7 // the target, 7/8 of it, is 3/4 of the entries
	o.evict(0)
	if !o.stuck {
		t.Fatal("not stuck with nothing durable")
	}
	// A quarter of the entries have tickets at or below 1,000; the sample's
	// quantile is off by 0.03 (one standard deviation) or so.
	if o.rescanAt < 500 || o.rescanAt > 1600 {
		t.Fatalf("rescan at %d, want about 1,000", o.rescanAt)
	}
}

// BenchmarkOverlayAddCreeping: as BenchmarkOverlayAddStuck, but the
// durable mark moves by one every add (a group commit's worth, while a
// held result keeps it far below the newest entries).
func BenchmarkOverlayAddCreeping(b *testing.B) {
	const n = 1 << 16
	var gauge atomic.Int64
	o := newOverlay(1, &gauge)
	for i := range n {
		row := overlayRow(i)
		o.add(row.DID, &row, true, 0).ticket = uint64(i + 1)
	}
	o.limit = o.bytes // over its bound by the next add: full, nothing durable
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		did := overlayDID(n + i)
		o.add(did, nil, false, uint64(i)).ticket = uint64(n + 1 + i)
	}
}

// BenchmarkOverlayAddStuck: adding an account to an overlay over its bound
// whose n entries are all not yet durable (the sequencer holds a result of
// this worker). Before, every add scanned the whole map for nothing.
func BenchmarkOverlayAddStuck(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 16} {
		b.Run("entries="+strconv.Itoa(n), func(b *testing.B) {
			var gauge atomic.Int64
			o := newOverlay(1, &gauge)
			for i := range n {
				row := overlayRow(i)
				o.add(row.DID, &row, true, 0).ticket = uint64(i + 1)
			}
			dids := make([][]byte, 4096)
			for i := range dids {
				dids[i] = overlayDID(n + i)
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				did := dids[i%len(dids)]
				if a := o.get(did); a != nil {
					delete(o.m, a.did())
					o.bytes -= entryBytes(a)
				}
				o.add(did, nil, false, 0).ticket = uint64(n + 1 + i)
			}
		})
	}
}
