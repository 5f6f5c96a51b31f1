package splitter

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/atrelay/relay/bench/replay"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/engine/relay"
	"github.com/atrelay/relay/engine/resync"
	"github.com/atrelay/relay/internal/fixtures"
)

// relayNode is a real relay (full validation) fed by the realpds-2
// capture's replay fleet, serving subscribeRepos.
type relayNode struct {
	logNode
	fl  *replay.Fleet
	ids *identity.Resolver
	rs  *resync.Resyncer
	r   *relay.Relay
}

func startRelay(t *testing.T) *relayNode {
	t.Helper()
	fl, err := replay.StartFromShared(context.Background(), fixtures.Path("captures/realpds-2"), replay.Options{Gated: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fl.Close() })
	n := &relayNode{logNode: logNode{t: t, dir: t.TempDir(), ring: 8 << 20, http: server{t: t}}, fl: fl}
	n.open()
	n.ids = identity.New(identity.Config{PLCURL: fl.PLCURL, AllowInsecureHosts: true})
	var r *relay.Relay
	n.rs, err = resync.New(resync.Config{Identities: n.ids, AllowInsecureHosts: true, RatePerSecond: 1000, Burst: 100,
		RetryBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		OnResult: func(did string, res resync.Result) { r.OnResyncResult(did, res) }})
	if err != nil {
		t.Fatal(err)
	}
	r, err = relay.New(relay.Config{AllowInsecureHosts: true, DefaultAccountLimit: 1000, EventsPerSecond: 1e6, Workers: 2,
		ResyncRetryBackoff: 20 * time.Millisecond, ResyncMaxBackoff: 200 * time.Millisecond},
		relay.Deps{Store: n.st, Identity: n.ids, Hub: n.hub, Resyncer: n.rs, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	n.r = r
	mux := http.NewServeMux()
	mux.Handle(subscribePath, n.hub)
	n.http.listen(mux)
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.rs.Close()
		if err := n.r.Close(); err != nil {
			t.Errorf("relay close: %v", err)
		}
		n.closeLog()
		n.ids.Close()
	})
	for _, name := range fl.Hostnames {
		if err := r.RequestCrawl(context.Background(), name); err != nil {
			t.Fatalf("requestCrawl %s: %v", name, err)
		}
	}
	// The fleet is gated: every host must be subscribed before its frames
	// are released, or the relay would only see the later ones.
	waitFor(t, "the relay to connect to every host", func() bool {
		up := 0
		for _, h := range r.Hosts() {
			if h.Connected {
				up++
			}
		}
		return up == len(fl.Hostnames)
	})
	return n
}

// waitCaughtUp waits until every capture host's last seq is durable in the
// relay (its persisted host cursor is written with its events).
func (n *relayNode) waitCaughtUp() {
	n.t.Helper()
	for _, h := range n.fl.Replay.Hosts() {
		waitFor(n.t, "the relay to ingest "+h.Name, func() bool {
			sh, ok := n.st.HostByName(h.Name)
			return ok && int64(sh.Cursor) >= h.LastSeq
		})
	}
}

// TestChainFromRelay runs the realpds-2 capture through a relay, a
// splitter following it and a splitter following that splitter, with
// consumers at every level, and checks every level serves the relay's
// frames and seqs byte for byte. Meanwhile the first splitter is killed
// and restarted mid-stream (the second one's upstream), and one consumer
// moves from the first splitter to the second with its cursor: nobody sees
// a gap or a duplicate. The second splitter's small ring feeds its
// consumers from disk.
func TestChainFromRelay(t *testing.T) {
	rl := startRelay(t)
	a := startNode(t, fastConfig(rl.url()), 1<<20)
	b := startNode(t, fastConfig(a.url()), 64<<10)
	fromRelay := dial(t, rl.url(), 0)
	fromA := dial(t, a.url(), 0)
	fromB := dial(t, b.url(), 0)
	mover := dial(t, a.url(), 0)

	rl.fl.Replay.Start()
	a.waitSeq(3000)
	t.Logf("killing splitter A at seq %d (B at %d, relay at %d)", a.st.NewestSeq(), b.st.NewestSeq(), rl.st.NewestSeq())
	a.stop() // B's upstream dies mid-stream
	waitFor(t, "splitter B to notice", func() bool { return !b.sp.Status().Connected })
	a.start()

	// The mover was cut off with A; it continues on B from its cursor.
	<-mover.Done()
	moved := mover.Frames()
	if len(moved) == 0 {
		t.Fatal("the moving consumer got nothing from A")
	}
	mover2 := dial(t, b.url(), int64(seqOf(t, moved[len(moved)-1])))
	// And the consumer of A resumes on the restarted A.
	<-fromA.Done()
	gotA := fromA.Frames()
	fromA2 := dial(t, a.url(), int64(seqOf(t, gotA[len(gotA)-1])))

	rl.waitCaughtUp()
	wantSeqs, want := logged(t, rl.st, 0)
	total := len(want)
	if total < 18000 || wantSeqs[0] != 1 || int(wantSeqs[total-1]) != total {
		t.Fatalf("relay logged %d events (%d..%d)", total, wantSeqs[0], wantSeqs[total-1])
	}
	a.waitSeq(uint64(total))
	b.waitSeq(uint64(total))
	for _, c := range []struct {
		name string
		got  [][]byte
	}{
		{"relay consumer", fromRelay.waitFrames(t, total)},
		{"splitter B consumer", fromB.waitFrames(t, total)},
		{"splitter A consumer across A's restart", append(gotA, fromA2.waitFrames(t, total-len(gotA))...)},
		{"consumer moved from A to B", append(moved, mover2.waitFrames(t, total-len(moved))...)},
		{"late consumer of B, from disk", dial(t, b.url(), 0).waitFrames(t, total)},
	} {
		sameStream(t, c.name, c.got, wantSeqs, want)
	}
	for _, n := range []*node{a, b} {
		_, frames := logged(t, n.st, 0)
		sameStream(t, "log of "+n.http.addr, frames, wantSeqs, want)
		if d := counter(t, n.set, `relay_splitter_frames_dropped_total{reason="seq_not_above_newest"}`); d != 0 {
			t.Errorf("%s: %d frames sent twice", n.http.addr, d)
		}
	}
}
