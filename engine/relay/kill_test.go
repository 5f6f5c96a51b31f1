package relay

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/atrelay/relay/bench/plc"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/internal/testutil"
	"github.com/atrelay/relay/store"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

const (
	killChildEnv = "RELAY_KILL_CHILD_DIR"
	killPLCEnv   = "RELAY_KILL_CHILD_PLC"
	killHostsEnv = "RELAY_KILL_CHILD_HOSTS"
)

// TestKill9 runs the relay as a child process fed by the realpds-2 capture,
// with two consumers recording what they receive, SIGKILLs it under load at
// random moments (three rounds) and restarts it on the same data directory,
// then checks: the log is contiguous, every frame a consumer received is
// in it byte for byte, every consumer saw each seq exactly once, every
// upstream frame was accepted exactly once (the log holds exactly the
// capture's frames) and the account state equals final-state.json.
func TestKill9(t *testing.T) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		killChild(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary four times")
	}
	fl := startFleet(t, true)
	// A directory that takes its time, so new accounts' first frames park
	// and later commits of their hosts pass them (OrderAccount): a kill then
	// finds events durable above a host's cursor, sent again after the
	// restart and dropped as stale duplicates.
	if err := fl.PLC.SetBehaviour(plc.Behaviour{LatencyP50: 5 * time.Millisecond, LatencyP99: 40 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, fh := range fl.Replay.Hosts() {
		total += fh.Frames
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	consumers := []*recorder{{}, {}}
	for round := 0; round < 4; round++ {
		cmd, out := testutil.StartChild(t, "TestKill9", killChildEnv+"="+dir, killPLCEnv+"="+fl.PLCURL,
			killHostsEnv+"="+strings.Join(fl.Hostnames, ","))
		sc := bufio.NewScanner(out)
		addr := ""
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
				addr = a
				break
			}
		}
		if addr == "" {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("round %d: child did not start", round)
		}
		go func() { _, _ = io.Copy(io.Discard, out) }()
		var wg sync.WaitGroup
		for _, c := range consumers {
			// Not connected until this round's dial succeeds: cleared
			// here, before the wait below can see last round's value.
			c.disconnected()
			wg.Add(1)
			go func() { defer wg.Done(); c.run(addr) }()
		}
		if round == 0 {
			fl.Replay.Start()
		}
		// Kill once consumers got a random amount more (rounds 0-2), or
		// everything (round 3, killed all the same).
		target := total
		if round < 3 {
			lo := total * (round + 1) / 5
			target = lo + rng.IntN(total/5)
		}
		// The last round waits for every consumer (a slower one would
		// otherwise lose its tail to the final kill, with no later round to
		// resume it); earlier rounds kill mid-stream by consumer 0's count.
		progress := func() int {
			if round < 3 {
				return consumers[0].count()
			}
			least := total
			for _, c := range consumers {
				least = min(least, c.count())
			}
			return least
		}
		deadline := time.Now().Add(hangTimeout)
		// Kill only once every consumer is subscribed: a consumer whose
		// count already passed this round's target would otherwise have
		// the relay killed under its handshake (a dial error, not a loss).
		for _, c := range consumers {
			for !c.isConnected() && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}
		for progress() < target && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if round < 3 {
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		wg.Wait()
		for i, c := range consumers {
			if c.err != "" {
				t.Fatalf("round %d consumer %d: %s", round, i, c.err)
			}
		}
		t.Logf("round %d: killed with consumers at %d/%d frames", round, consumers[0].count(), total)
	}

	st, err := store.Open(dir, store.Options{BlockCacheBytes: 8 << 20, MemTableBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	it, err := st.NewIterator(0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for it.Next() {
		n++
		if it.Seq() != store.Seq(n) {
			t.Fatalf("log seq %d at position %d: gap or duplicate", it.Seq(), n)
		}
		for i, c := range consumers {
			if f, ok := c.frames[int64(n)]; ok && !bytes.Equal(f, it.Frame()) {
				t.Fatalf("consumer %d: seq %d differs from the log", i, n)
			}
		}
	}
	_ = it.Close()
	if n != total {
		t.Fatalf("log holds %d events, want each of the %d capture frames exactly once", n, total)
	}
	for i, c := range consumers {
		if len(c.frames) != total {
			t.Errorf("consumer %d received %d distinct seqs, want %d", i, len(c.frames), total)
		}
	}
	fs := readFinalState(t)
	var a store.Account
	for did, want := range fs.Accounts {
		ok, err := st.GetAccount([]byte(did), &a)
		if err != nil || !ok || string(a.Rev) != want.Rev || cid.CID(a.Commit).String() != want.CID || a.Active() != want.Active {
			t.Fatalf("%s: found %v err %v rev %s, want %s", did, ok, err, a.Rev, want.Rev)
		}
	}
}

// recorder is a consumer kept across relay restarts: it resumes from the
// last seq it received and records every frame by seq. Its fields are
// written by its run goroutine; count is safe to call concurrently.
type recorder struct {
	mu        sync.Mutex
	frames    map[int64][]byte
	last      int64
	connected bool   // this round's subscription is open (under mu)
	err       string // a violation seen (duplicate or gap), read after run
}

// isConnected reports whether this round's subscription is open; safe to
// call concurrently.
func (c *recorder) isConnected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

func (c *recorder) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.frames)
}

// disconnected marks the recorder as not subscribed, before a round's
// run starts.
func (c *recorder) disconnected() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connected = false
}

// run reads from addr until the connection dies (the relay was killed).
func (c *recorder) run(addr string) {
	c.mu.Lock()
	if c.frames == nil {
		c.frames = map[int64][]byte{}
	}
	cursor := c.last
	c.mu.Unlock()
	conn, br, _, err := ws.Dial(context.Background(), subscribeURL(addr, cursor))
	if err != nil {
		c.err = fmt.Sprintf("dial: %v", err)
		return
	}
	defer conn.Close()
	c.mu.Lock()
	c.connected = true
	c.mu.Unlock()
	rw := wsStream(conn, br)
	var dec event.Decoder
	var m event.Message
	for {
		b, err := wsutil.ReadServerBinary(rw)
		if err != nil {
			return
		}
		if err := dec.Decode(b, &m); err != nil {
			c.err = fmt.Sprintf("decode: %v", err)
			return
		}
		seq, _ := m.Seq()
		c.mu.Lock()
		if seq != c.last+1 {
			c.err = fmt.Sprintf("seq %d after %d", seq, c.last)
			c.mu.Unlock()
			return
		}
		c.frames[seq], c.last = b, seq
		c.mu.Unlock()
	}
}

// killChild is the relay process of TestKill9: it runs until killed.
func killChild(t *testing.T, dir string) {
	hosts := strings.Split(os.Getenv(killHostsEnv), ",")
	fresh := false
	h := startRelayPLC(t, os.Getenv(killPLCEnv), hosts, dir, testConfig(), store.SyncEveryBatch, 64<<20,
		func(st *store.Store) { fresh = len(st.ListHosts(store.HostNone, 1)) == 0 })
	if fresh {
		h.crawlAll()
	} else {
		h.waitConnected()
	}
	fmt.Println("ready " + h.addr)
	select {}
}
