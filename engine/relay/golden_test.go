package relay

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/store"
)

// goldenHost0SHA256 is the SHA-256 of every frame a consumer receives from a
// cursor-0 replay after the relay ingested host 0 of the realpds-2 capture
// (each frame prefixed by its length, big-endian uint32). It was computed at
// bde64a7, before the engine was restructured (issue 13), and pins what
// consumers see: seqs, frame bytes, event order. A change that alters it
// changes the firehose, and must say so.
const goldenHost0SHA256 = "6820ef18af809cee53e06fea008ce2b81e0f74fdfa70f1dda30a8207cb56a832"

// TestGoldenSingleHostReplay checks that the consumer-visible bytes of a
// single-host replay of the shared capture are exactly the pinned ones,
// published in the host's order (OrderHost: the output is then a function
// of the input alone).
func TestGoldenSingleHostReplay(t *testing.T) {
	frames, _ := replayHost0(t, OrderHost)
	sum := sha256.New()
	var n [4]byte
	for _, f := range frames {
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		sum.Write(n[:])
		sum.Write(f)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != goldenHost0SHA256 {
		t.Errorf("consumer-visible bytes changed: sha256 %s, pinned %s", got, goldenHost0SHA256)
	}
}

// TestAccountOrderKeepsEachAccountsEvents replays the golden host with the
// default OrderAccount, where a commit may pass an earlier frame of
// another account parked for its identity: every account must get exactly
// the events, bytes and order it gets in the pinned host-order replay
// (seqs aside), and the interleaving between accounts may differ.
func TestAccountOrderKeepsEachAccountsEvents(t *testing.T) {
	hostOrder, _ := replayHost0(t, OrderHost)
	accountOrder, passed := replayHost0(t, OrderAccount)
	if passed == 0 {
		t.Fatal("no event passed a parked frame: the replay does not exercise OrderAccount")
	}
	want, got := perAccount(t, hostOrder), perAccount(t, accountOrder)
	if len(got) != len(want) {
		t.Fatalf("%d accounts with events, want %d", len(got), len(want))
	}
	for did, w := range want {
		g := got[did]
		if len(g) != len(w) {
			t.Fatalf("%s: %d events, want %d", did, len(g), len(w))
		}
		for i := range w {
			if !bytes.Equal(g[i], w[i]) {
				t.Fatalf("%s: event %d differs from the host-order replay's", did, i)
			}
		}
	}
}

// perAccount groups frames by DID, in order, each with its seq set to 1.
func perAccount(t *testing.T, frames [][]byte) map[string][][]byte {
	t.Helper()
	out := map[string][][]byte{}
	var p event.Peeked
	for i, f := range frames {
		if err := event.Peek(f, &p); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		b, err := event.RewriteEncodedSeq(nil, f, 1)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		out[string(p.DID)] = append(out[string(p.DID)], b)
	}
	return out
}

// replayHost0 ingests host 0 of the shared capture with the given order
// and returns every frame a consumer receives from a cursor-0 replay, and
// how many events passed a parked frame.
func replayHost0(t *testing.T, order PublishOrder) ([][]byte, uint64) {
	t.Helper()
	fl := startFleet(t, true)
	host := fl.Replay.Hosts()[0]
	cfg := testConfig()
	cfg.Order = order
	h := startRelayPLC(t, fl.PLCURL, []string{host.Name}, t.TempDir(), cfg, store.NoSync, 64<<20, nil)
	h.fleet = fl
	defer h.stop()
	h.crawlAll()
	fl.Replay.Start()

	deadline := time.Now().Add(hangTimeout)
	for {
		if sh, ok := h.st.HostByName(host.Name); ok && int64(sh.Cursor) >= host.LastSeq {
			break
		}
		if time.Now().After(deadline) {
			sh, _ := h.st.HostByName(host.Name)
			t.Fatalf("host %s did not catch up to seq %d (cursor %d)", host.Name, host.LastSeq, sh.Cursor)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := int(h.st.NewestSeq()); got != host.Frames {
		t.Fatalf("logged %d events, want every one of host 0's %d frames", got, host.Frames)
	}
	return dialConsumer(t, h.addr, 0).waitFrames(t, host.Frames)[:host.Frames], h.r.m.passed.Get()
}
