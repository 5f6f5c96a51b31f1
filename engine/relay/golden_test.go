package relay

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"

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
// single-host replay of the shared capture are exactly the pinned ones.
func TestGoldenSingleHostReplay(t *testing.T) {
	fl := startFleet(t, true)
	host := fl.Replay.Hosts()[0]
	h := startRelayPLC(t, fl.PLCURL, []string{host.Name}, t.TempDir(), testConfig(), store.NoSync, 64<<20, nil)
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

	frames := dialConsumer(t, h.addr, 0).waitFrames(t, host.Frames)
	sum := sha256.New()
	var n [4]byte
	for _, f := range frames[:host.Frames] {
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		sum.Write(n[:])
		sum.Write(f)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != goldenHost0SHA256 {
		t.Errorf("consumer-visible bytes changed: sha256 %s, pinned %s", got, goldenHost0SHA256)
	}
}
