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

// TestSlowSubscriberDisconnected: a live subscriber that stops reading
// fills its socket, then its bounded queue, and is disconnected as too
// slow; a replaying subscriber that stops reading blocks only itself. The
// pump never waits for either: a fast subscriber gets every event, and
// Close ends the stuck replay at once.
func TestSlowSubscriberDisconnected(t *testing.T) {
	checkNoLeak(t)
	ts := startServer(t, newFakeSource(), Config{QueueEvents: 64, QueueBytes: 512 << 10})
	// Some history, so that a cursor=0 subscriber replays.
	ts.appendAll(t, baseMS, post(alice, "old"))
	streamtest.WaitFor(t, "the pump", func() bool { return ts.pumpSeq.Load() == 1 })

	slow := ts.dial(t, "")
	if tc, ok := slow.conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	fast := ts.dial(t, "")
	ts.waitLive(t, 2)

	// The producer paces itself on the fast subscriber, as a real stream
	// would: a burst far larger than any queue would make every
	// subscriber too slow.
	const n, chunk = 1500, 16
	big := postRecord(strings.Repeat("x", 16<<10))
	var received atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; i < n; i += chunk {
			for j := i; j < min(i+chunk, n); j++ {
				ts.src.Append(t, baseMS+int64(j), commitFrame(bob, "r", testOp{"create", "app.bsky.feed.post/p" + strconv.Itoa(j), big}))
			}
			ts.Notify()
			for received.Load() < int64(min(i+chunk, n)) {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}
	}()
	for i := range n {
		e := fast.event(waitMsg)
		if want := "commit " + bob + " app.bsky.feed.post/p" + strconv.Itoa(i) + " create"; e.key() != want {
			t.Fatalf("event %d: got %s, want %s", i, e.key(), want)
		}
		received.Add(1)
	}
	streamtest.WaitFor(t, "the slow subscriber's disconnect", func() bool { return ts.m.disconnects[causeTooSlow].Get() == 1 })
	ts.mu.Lock()
	live := len(ts.live)
	ts.mu.Unlock()
	if live != 1 {
		t.Fatalf("%d live subscribers, want only the fast one", live)
	}
	// A replay of the whole log that stops reading blocks in its own
	// write; it is only slow, not dead, so it stays until Close, which
	// must not wait for its write timeout.
	stuck := ts.dial(t, "cursor=0")
	if tc, ok := stuck.conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	streamtest.WaitFor(t, "the replay", func() bool { return ts.m.sentReplay.Get() > 0 })
	ts.appendAll(t, baseMS+n, post(carol, "after"))
	fast.expectKeys("commit " + carol + " app.bsky.feed.post/after create")
	began := time.Now()
	ts.Close()
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
}

// TestCloseEndsEveryone: Close sends live subscribers a 1001 close frame,
// ends subscribers blocked in a replay write, waiting for a replay turn or
// for their hello, stops the pump, and leaves no goroutine behind
// (checkNoLeak).
func TestCloseEndsEveryone(t *testing.T) {
	checkNoLeak(t)
	ts := startServer(t, newFakeSource(), Config{MaxReplays: 1})
	big := postRecord(strings.Repeat("x", 16<<10))
	for i := range 800 {
		ts.src.Append(t, baseMS, commitFrame(bob, "r", testOp{"create", "app.bsky.feed.post/p" + strconv.Itoa(i), big}))
	}
	ts.Notify()
	streamtest.WaitFor(t, "the pump", func() bool { return ts.pumpSeq.Load() == 800 })
	live := ts.dial(t, "")
	ts.waitLive(t, 1)
	ts.dial(t, "requireHello=true")
	// This replay takes the only slot and blocks on its socket...
	blocker := ts.dial(t, "cursor=0")
	if tc, ok := blocker.conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	streamtest.WaitFor(t, "the replay", func() bool { return ts.m.sentReplay.Get() > 0 })
	// ...so this one waits for its turn.
	ts.dial(t, "cursor=0")
	streamtest.WaitFor(t, "four subscribers", func() bool { ts.mu.Lock(); defer ts.mu.Unlock(); return len(ts.all) == 4 })
	began := time.Now()
	ts.Close()
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if code := live.closeCode(waitMsg); code != closeGoingAway {
		t.Fatalf("close code %d, want %d", code, closeGoingAway)
	}
	if n := ts.m.disconnects[causeServerClosed].Get(); n != 4 {
		t.Fatalf("%d subscribers ended by Close, want 4", n)
	}
}
