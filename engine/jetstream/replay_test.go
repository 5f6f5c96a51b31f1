package jetstream

import (
	"bytes"
	"github.com/atrelay/relay/internal/streamtest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// history is what a test appended: every Jetstream event a full live
// subscriber received, and for each relay seq the index of its first
// Jetstream event.
type history struct {
	events  []jsEvent
	firstOf map[uint64]int // relay seq → index of its first event
}

// secondMS is a second boundary near the test events' time.
const secondMS = 1_764_109_077_000

// appendHistory logs a varied stream over three seconds: several relay
// events per millisecond, multi-op commits, identity and account events,
// and a #sync (which yields nothing). It returns the relay seqs with the
// number of Jetstream events each yields.
func appendHistory(t *testing.T, ts *testServer, from int, baseMS int64) (seqs []uint64, counts []int) {
	t.Helper()
	offsets := []int64{0, 0, 0, 1, 1, 500, 500, 500, 998, 999, 999}
	n := from
	for sec := range int64(3) {
		for _, off := range offsets {
			ms := baseMS + sec*1000 + off
			n++
			r := strconv.Itoa(n)
			var frame []byte
			var c int
			switch n % 5 {
			case 0:
				frame, c = identityFrame(bob, "bob"+r+".test"), 1
			case 1:
				frame, c = accountFrame(carol, n%2 == 0, ""), 1
			case 2:
				frame, c = commitFrame(alice, "r"+r,
					testOp{"create", "app.bsky.feed.post/a" + r, postRecord(r)},
					testOp{"create", "app.bsky.feed.like/b" + r, postRecord(r)},
					testOp{"delete", "app.bsky.graph.follow/c" + r, nil}), 3
			default:
				frame, c = post(bob, "p"+r), 1
			}
			seqs = append(seqs, ts.src.Append(t, ms, frame))
			counts = append(counts, c)
		}
	}
	ts.Notify()
	return seqs, counts
}

// readHistory reads n events from a full live subscriber and checks their
// stamps rise strictly.
func readHistory(t *testing.T, c *client, seqs []uint64, counts []int) history {
	t.Helper()
	h := history{firstOf: map[uint64]int{}}
	for i, s := range seqs {
		h.firstOf[s] = len(h.events)
		for range counts[i] {
			h.events = append(h.events, c.event(waitMsg))
		}
	}
	for i := 1; i < len(h.events); i++ {
		if h.events[i].TimeUS <= h.events[i-1].TimeUS {
			t.Fatalf("stamps do not rise: %d then %d", h.events[i-1].TimeUS, h.events[i].TimeUS)
		}
	}
	return h
}

// expectSuffix reads events from c and requires exactly want, byte for
// byte, then silence.
func expectSuffix(t *testing.T, name string, c *client, want []jsEvent) {
	t.Helper()
	for i, w := range want {
		e := c.event(waitMsg)
		if !bytes.Equal(e.raw, w.raw) {
			t.Fatalf("%s: event %d of %d:\ngot  %s\nwant %s", name, i, len(want), e.raw, w.raw)
		}
	}
	c.expectNothing(30 * time.Millisecond)
}

// TestCursorReplay: time and seq cursors replay from the log through the
// time index with exactly the stamps and bytes the live stream sent, then
// continue live with no gap and no duplicate; a cursor before the window
// starts at the oldest event, a future one goes live.
func TestCursorReplay(t *testing.T) {
	checkNoLeak(t)
	// Every case is a subscriber, all from 127.0.0.1.
	ts := startServer(t, newFakeSource(), Config{MaxSubscribersPerIP: 100})
	ref := ts.dial(t, "")
	ts.waitLive(t, 1)
	seqs, counts := appendHistory(t, ts, 0, secondMS)
	h := readHistory(t, ref, seqs, counts)
	ev := h.events

	type cursorCase struct {
		name   string
		cursor string
		from   int // index into ev of the first expected event
	}
	var cases []cursorCase
	for _, k := range []int{0, 1, 2, 3, 7, len(ev) / 2, len(ev) - 1} {
		cases = append(cases, cursorCase{"time_us of event " + strconv.Itoa(k), strconv.FormatInt(ev[k].TimeUS, 10), k})
	}
	// Between two stamps: inclusive of the next one.
	cases = append(cases, cursorCase{"between stamps", strconv.FormatInt(ev[3].TimeUS+1, 10), 4})
	// A second with no events: from the next event.
	cases = append(cases, cursorCase{"between events of a second", strconv.FormatInt((secondMS+1000+2)*1000, 10), h.firstOf[seqs[len(seqs)/3+5]]})
	for _, j := range []int{0, 1, 5, 12} {
		cases = append(cases, cursorCase{"seq " + strconv.FormatUint(seqs[j], 10), strconv.FormatUint(seqs[j], 10), h.firstOf[seqs[j+1]]})
	}
	cases = append(cases,
		cursorCase{"seq 0", "0", 0},
		cursorCase{"before the window", "1000000000000000", 0},
		cursorCase{"future", strconv.FormatInt((testNowMS+60_000)*1000, 10), len(ev)},
		cursorCase{"after the newest, before now", strconv.FormatInt(ev[len(ev)-1].TimeUS+1, 10), len(ev)},
	)
	clients := make([]*client, len(cases))
	for i, cc := range cases {
		clients[i] = ts.dial(t, "cursor="+cc.cursor)
		expectSuffix(t, cc.name, clients[i], ev[cc.from:])
	}
	ts.waitLive(t, 1+len(cases))

	// Live continuation: everyone gets the new events right after.
	seqs2, counts2 := appendHistory(t, ts, 1000, secondMS+10_000)
	more := readHistory(t, ref, seqs2, counts2).events
	if more[0].TimeUS <= ev[len(ev)-1].TimeUS {
		t.Fatalf("live stamps went back")
	}
	for i, cc := range cases {
		expectSuffix(t, cc.name+", live", clients[i], more)
	}
}

// TestCursorTrimmedWindow: after retention cut into a second, a time
// cursor before the window (or in the cut second) starts at the oldest
// retained event; the later seconds keep their live stamps exactly.
func TestCursorTrimmedWindow(t *testing.T) {
	checkNoLeak(t)
	ts := startServer(t, newFakeSource(), Config{})
	ref := ts.dial(t, "")
	ts.waitLive(t, 1)
	seqs, counts := appendHistory(t, ts, 0, secondMS)
	ev := readHistory(t, ref, seqs, counts).events
	cut := 6 // mid first second: its index entry goes
	ts.src.TrimBefore(seqs[cut])
	first := 0
	for _, c := range counts[:cut] {
		first += c
	}
	secondStart := first
	for i := cut; i < len(seqs) && i < 11; i++ {
		secondStart += counts[i]
	}
	for _, cursor := range []int64{1_000_000_000_000_000, ev[0].TimeUS, ev[first].TimeUS} {
		c := ts.dial(t, "cursor="+strconv.FormatInt(cursor, 10))
		for i := first; i < len(ev); i++ {
			e := c.event(waitMsg)
			if e.key() != ev[i].key() {
				t.Fatalf("cursor %d: event %d is %s, want %s", cursor, i, e.key(), ev[i].key())
			}
			// The cut second is restamped from its oldest event, never
			// later than it was live, and sent whole; later seconds are
			// exact.
			if i < secondStart && e.TimeUS > ev[i].TimeUS || i >= secondStart && !bytes.Equal(e.raw, ev[i].raw) {
				t.Fatalf("cursor %d: event %d stamped %d, live %d", cursor, i, e.TimeUS, ev[i].TimeUS)
			}
		}
		c.expectNothing(30 * time.Millisecond)
	}
}

// TestReplayHandoverUnderLoad: subscribers join with cursors while events
// keep arriving, their replays re-seek in small passes, and each ends up
// with exactly the live stream's suffix from its cursor: no gap, no
// duplicate across the hand-over from log to live.
func TestReplayHandoverUnderLoad(t *testing.T) {
	checkNoLeak(t)
	ts := startServer(t, newFakeSource(), Config{passEvents: 7, MaxReplays: 2})
	ref := ts.dial(t, "")
	ts.waitLive(t, 1)

	const total = 1500
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range total {
			ms := secondMS + int64(i/3) // three relay events per millisecond
			var f []byte
			if i%4 == 0 {
				f = commitFrame(alice, "r", testOp{"create", "app.bsky.feed.post/a" + strconv.Itoa(i), postRecord("x")},
					testOp{"create", "app.bsky.feed.like/b" + strconv.Itoa(i), postRecord("y")})
			} else {
				f = post(bob, "p"+strconv.Itoa(i))
			}
			ts.src.Append(t, ms, f)
			ts.Notify()
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	want := total + (total+3)/4
	var ev []jsEvent
	type joiner struct {
		c    *client
		from int
	}
	var joiners []joiner
	for len(ev) < want {
		ev = append(ev, ref.event(waitMsg))
		switch n := len(ev); n {
		case 100, 400, 700, 1000, 1300:
			// Join with the stamp of an event already seen a while ago.
			k := n - 90
			joiners = append(joiners, joiner{ts.dial(t, "cursor="+strconv.FormatInt(ev[k].TimeUS, 10)), k})
		case 250, 900:
			joiners = append(joiners, joiner{ts.dial(t, "cursor=0"), 0})
		}
	}
	wg.Wait()
	for i, j := range joiners {
		expectSuffix(t, "joiner "+strconv.Itoa(i), j.c, ev[j.from:])
	}
}

// TestIdlePumpStampsLikeReplay: with no subscriber the pump skips to the
// newest second; a subscriber that then goes live, in the middle of that
// second, gets the very stamps and bytes a replay of the log computes.
func TestIdlePumpStampsLikeReplay(t *testing.T) {
	checkNoLeak(t)
	ts := startServer(t, newFakeSource(), Config{})
	seqs, counts := appendHistory(t, ts, 0, secondMS)
	streamtest.WaitFor(t, "the idle pump", func() bool { return ts.pumpSeq.Load() == seqs[len(seqs)-1] })
	// Only the newest second was converted: 11 relay events a second.
	total := 0
	for _, c := range counts {
		total += c
	}
	if n := ts.m.events.Get(); n == 0 || n >= uint64(total) {
		t.Errorf("the idle pump converted %d of %d Jetstream events; want only the newest second's", n, total)
	}
	live := ts.dial(t, "")
	ts.waitLive(t, 1)
	// The first second appended now is the last one appended before.
	seqs2, counts2 := appendHistory(t, ts, 1000, secondMS+2000)
	got := readHistory(t, live, seqs2, counts2).events
	all := readHistory(t, ts.dial(t, "cursor=0"), append(seqs, seqs2...), append(counts, counts2...)).events
	tail := all[len(all)-len(got):]
	for i := range got {
		if !bytes.Equal(got[i].raw, tail[i].raw) {
			t.Fatalf("event %d: live after an idle pump\n%s\nreplay\n%s", i, got[i].raw, tail[i].raw)
		}
	}
}
