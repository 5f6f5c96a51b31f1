package jetstream

import (
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/internal/storetest"
	"github.com/atrelay/relay/internal/testutil"
	"github.com/atrelay/relay/store"
)

// withSeqs logs frames[i], a canonical frame, with the seq it gets.
func withSeqs(frames [][]byte) func(int, store.Seq) []byte {
	return func(i int, seq store.Seq) []byte {
		out, err := event.RewriteSeq(nil, frames[i], int64(seq))
		if err != nil {
			panic("BUG: test frame is not rewritable: " + err.Error())
		}
		return out
	}
}

// TestStoreSource runs the endpoint on a real store (in-memory Pebble):
// events appended in batches over several seconds, a live subscriber, then
// time and seq cursors that must reproduce the live bytes exactly through
// the store's time index and iterator.
func TestStoreSource(t *testing.T) {
	checkNoLeak(t)
	clock := testutil.NewClock(time.UnixMilli(secondMS + 400))
	st, err := store.Open("db", store.Options{
		FS: vfs.NewMem(), BlockCacheBytes: 8 << 20, MemTableBytes: 4 << 20,
		RetentionInterval: time.Hour, Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := New(StoreSource{st}, Config{PollInterval: 20 * time.Millisecond, Now: func() time.Time { return time.UnixMilli(testNowMS) }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := &testServer{Server: s, hs: httptest.NewServer(s)}
	t.Cleanup(ts.hs.Close)
	ref := ts.dial(t, "")
	ts.waitLive(t, 1)

	var total int
	for batch := range 12 {
		var evs []store.Event
		var frames [][]byte
		for i := range 4 {
			n := strconv.Itoa(batch*10 + i)
			f := commitFrame(alice, "r", testOp{"create", "app.bsky.feed.post/a" + n, postRecord(n)},
				testOp{"create", "app.bsky.feed.like/b" + n, postRecord(n)})
			ev := store.Event{Kind: store.KindCommit, DID: []byte(alice)}
			total += 2
			if i == 3 {
				ev = store.Event{Kind: store.KindIdentity, DID: []byte(bob)}
				f = identityFrame(bob, "bob"+n+".test")
				total--
			}
			evs, frames = append(evs, ev), append(frames, f)
		}
		if _, err := storetest.Append(st, evs, withSeqs(frames)); err != nil {
			t.Fatal(err)
		}
		s.Notify()
		clock.Advance(300 * time.Millisecond) // several batches per second
	}
	var ev []jsEvent
	for range total {
		ev = append(ev, ref.event(waitMsg))
	}
	for _, k := range []int{0, 1, 5, 17, 30, total - 1} {
		c := ts.dial(t, "cursor="+strconv.FormatInt(ev[k].TimeUS, 10))
		expectSuffix(t, "time cursor "+strconv.Itoa(k), c, ev[k:])
	}
	c := ts.dial(t, "cursor=8") // after relay seq 8: batches 0 and 1 done
	expectSuffix(t, "seq cursor 8", c, ev[14:])
}
