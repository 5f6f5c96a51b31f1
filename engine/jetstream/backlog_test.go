package jetstream

import (
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrelay/relay/internal/streamtest"
)

// backlogTestBytes is the BacklogBytes of the backlog tests: small beside
// their queues (QueueBytes 64 MiB), so only the backlog can cut anyone,
// and large beside what the paced flood keeps in flight to the subscriber
// that keeps up (16 messages of 16 KiB).
const backlogTestBytes = 4 << 20

// slowClient dials a subscriber that reads nothing, with a small socket
// buffer so that its messages pile up in its queue soon.
func slowClient(t *testing.T, ts *testServer, query string) *client {
	c := ts.dial(t, query)
	if tc, ok := c.conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	return c
}

// flood appends n posts by bob, numbered from first, paced on fast, which
// must receive each in order: as a real stream, never a burst far larger
// than any queue. Each message takes a 16 KiB buffer. While it runs it
// samples the backlog gauge and returns the largest value seen.
func flood(t *testing.T, ts *testServer, fast *client, first, n int) int64 {
	t.Helper()
	big := postRecord(strings.Repeat("x", 15000))
	var received atomic.Int64
	var most atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i += 16 {
			for j := i; j < min(i+16, n); j++ {
				ts.src.Append(t, baseMS+int64(first+j), commitFrame(bob, "r",
					testOp{"create", "app.bsky.feed.post/p" + strconv.Itoa(first+j), big}))
			}
			ts.Notify()
			for received.Load() < int64(min(i+16, n)) {
				most.Store(max(most.Load(), ts.backlog()))
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}
	}()
	defer func() { close(stop); <-done }()
	for i := range n {
		e := fast.event(waitMsg)
		if want := "commit " + bob + " app.bsky.feed.post/p" + strconv.Itoa(first+i) + " create"; e.key() != want {
			t.Fatalf("event %d: got %s, want %s", first+i, e.key(), want)
		}
		received.Add(1)
	}
	return most.Load()
}

// TestBacklogBoundsSlowSubscribers: subscribers that stop reading, whose
// own queues could take the whole run (QueueBytes 64 MiB), are cut as too
// slow once they hold back BacklogBytes of the stream, so what they pin
// together stays within it, where a per-subscriber bound lets each pin
// its own QueueBytes: before BacklogBytes, a relay counted
// MaxSubscribers × QueueBytes (8 MiB each) for what the queues could pin.
// A subscriber that keeps up gets every event.
func TestBacklogBoundsSlowSubscribers(t *testing.T) {
	checkNoLeak(t)
	ts := startServer(t, newFakeSource(), Config{QueueEvents: 100_000, QueueBytes: 64 << 20, BacklogBytes: backlogTestBytes})
	for range 3 {
		slowClient(t, ts, "")
	}
	fast := ts.dial(t, "")
	ts.waitLive(t, 4)

	// 1,500 messages: 23 MiB made, more than the sockets take, less than
	// any one queue.
	most := flood(t, ts, fast, 0, 1500)
	streamtest.WaitFor(t, "the slow subscribers cut", func() bool { return ts.m.disconnects[causeTooSlow].Get() == 3 })
	// Within the bound and a sixteenth of it (the sweep's step).
	if limit := int64(backlogTestBytes + backlogTestBytes/16); most > limit {
		t.Fatalf("a subscriber held back %d bytes of the stream, over BacklogBytes %d (limit %d)", most, backlogTestBytes, limit)
	}
	ts.mu.Lock()
	live := len(ts.live)
	ts.mu.Unlock()
	if live != 1 {
		t.Fatalf("%d live subscribers, want only the fast one", live)
	}
}

// TestBacklogSweepsANarrowedFilter: a subscriber that stops reading with
// messages queued and then narrows its filter to nothing gets no more
// messages, so enqueue never looks at it again; the pump's sweep still
// cuts it once the stream has moved BacklogBytes past its oldest message,
// instead of letting it pin them for as long as it stays connected.
func TestBacklogSweepsANarrowedFilter(t *testing.T) {
	checkNoLeak(t)
	ts := startServer(t, newFakeSource(), Config{QueueEvents: 100_000, QueueBytes: 64 << 20, BacklogBytes: backlogTestBytes})
	slow := slowClient(t, ts, "")
	fast := ts.dial(t, "")
	ts.waitLive(t, 2)

	// Enough to fill the slow one's socket buffers and queue 512 KiB behind
	// its blocked writer: it then pins messages for as long as it does not
	// read (the kernel's buffers, full, take no more).
	sub := ts.subscriberOf(t, slow)
	next := 0
	for ; sub.queuedBytes() < 512<<10; next += 16 {
		if next >= 4096 {
			t.Fatal("the slow subscriber never held messages back")
		}
		flood(t, ts, fast, next, 16)
	}
	if ts.m.disconnects[causeTooSlow].Get() != 0 {
		t.Fatal("cut before narrowing its filter: the test needs a larger BacklogBytes")
	}
	slow.sendText(`{"type":"options_update","payload":{"wantedCollections":["app.bsky.none.x"]}}`)
	streamtest.WaitFor(t, "the options update", func() bool { return ts.m.optionsUpds.Get() == 1 })

	flood(t, ts, fast, next, 400) // 6.3 MiB made past it
	streamtest.WaitFor(t, "the narrowed subscriber cut", func() bool { return ts.m.disconnects[causeTooSlow].Get() == 1 })
}

// subscriberOf returns c's subscriber, found by its address.
func (ts *testServer) subscriberOf(t *testing.T, c *client) *subscriber {
	t.Helper()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for sub := range ts.all {
		if sub.remote == c.conn.LocalAddr().String() {
			return sub
		}
	}
	t.Fatalf("no subscriber at %s", c.conn.LocalAddr())
	return nil
}

// madeNow returns the bytes of messages the pump has made.
func (ts *testServer) madeNow() int64 {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.made
}

// queuedBytes returns the bytes in sub's queue, not counting a batch being
// written.
func (sub *subscriber) queuedBytes() int {
	sub.qmu.Lock()
	defer sub.qmu.Unlock()
	return sub.qbytes
}
