package store

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/atrelay/relay/internal/testutil"
)

const crashChildEnv = "RELAY_STORE_CRASH_CHILD"

// TestCrashRecovery SIGKILLs a child process that appends under load, at
// random moments, again and again, and checks after each restart that every
// acknowledged seq survived, the log is contiguous, and account state and
// host cursors agree with the log.
func TestCrashRecovery(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	const rounds = 40
	var acked Seq
	for round := 0; round < rounds; round++ {
		cmd, out := testutil.StartChild(t, "TestCrashRecovery", crashChildEnv+"="+dir)
		want := 1 + r.IntN(40) // acks to wait for before the kill
		sc := bufio.NewScanner(out)
		for n := 0; n < want && sc.Scan(); n++ {
			seq, err := strconv.ParseUint(strings.TrimPrefix(sc.Text(), "ack "), 10, 64)
			if err != nil {
				t.Fatalf("round %d: child said %q", round, sc.Text())
			}
			acked = max(acked, Seq(seq))
		}
		// Kill mid-batch some of the time, right after an ack otherwise.
		if r.IntN(2) == 0 {
			time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond)
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		for sc.Scan() { // acks printed before the kill landed
			if seq, err := strconv.ParseUint(strings.TrimPrefix(sc.Text(), "ack "), 10, 64); err == nil {
				acked = max(acked, Seq(seq))
			}
		}
		_ = cmd.Wait()
		verifyCrashState(t, dir, acked, round)
	}
	if acked < rounds {
		t.Fatalf("only %d events acknowledged over %d rounds", acked, rounds)
	}
}

// crashChild appends batches forever, printing "ack <last seq>" after each
// returns. Revs and cursors follow seqs, so no event is ever stale.
func crashChild(dir string) {
	o := Options{BlockCacheBytes: 8 << 20, MemTableBytes: 1 << 20, RetentionInterval: time.Hour}
	s, err := Open(dir, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	var hosts [2]HostID
	for i := range hosts {
		name := fmt.Sprintf("h%d.example", i)
		h, ok := s.HostByName(name)
		if !ok {
			if h, err = s.CreateHost(NewHost{Hostname: name, Status: HostActive}); err != nil {
				fmt.Fprintln(os.Stderr, "child host:", err)
				os.Exit(2)
			}
		}
		hosts[i] = h.ID
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	var batch []Event
	var results []Result
	var bodies [64][]byte
	for {
		next := s.NewestSeq() + 1
		batch = batch[:0]
		for i, n := 0, 1+r.IntN(64); i < n; i++ {
			seq := next + Seq(i)
			d := r.IntN(40)
			hi := d % 2
			h, _ := s.GetHost(hosts[hi])
			cursor := h.Cursor + 1
			for _, e := range batch {
				if e.Host == hosts[hi] {
					cursor = e.Cursor + 1
				}
			}
			rv := rev(int(seq))
			bodies[i] = append(bodies[i][:0], crashBody(did(d), rv, hosts[hi], cursor)...)
			batch = append(batch, Event{
				Kind: KindCommit, DID: did(d), Host: hosts[hi], Cursor: cursor,
				Rev: rv, Commit: append([]byte("c"), rv...), Data: append([]byte("d"), rv...),
			})
		}
		results, err = appendFunc(s, batch, func(i int) []byte { return bodies[i] }, results[:0])
		if err != nil {
			fmt.Fprintln(os.Stderr, "child append:", err)
			os.Exit(2)
		}
		fmt.Printf("ack %d\n", results[len(results)-1].Seq)
	}
}

// crashBody is the test frame body: did|rev|host|cursor.
func crashBody(did, rev []byte, host HostID, cursor uint64) []byte {
	return []byte(fmt.Sprintf("%s|%s|%d|%d", did, rev, host, cursor))
}

func verifyCrashState(t *testing.T, dir string, acked Seq, round int) {
	t.Helper()
	s, err := Open(dir, Options{BlockCacheBytes: 8 << 20, MemTableBytes: 1 << 20, RetentionInterval: time.Hour})
	if err != nil {
		t.Fatalf("round %d: reopen: %v", round, err)
	}
	defer s.Close()
	if s.NewestSeq() < acked {
		t.Fatalf("round %d: newest seq %d below acknowledged %d", round, s.NewestSeq(), acked)
	}
	type last struct {
		rev    string
		cursor uint64
		events uint64
	}
	accounts := map[string]last{}
	hosts := map[HostID]last{}
	it, err := s.NewIterator(0)
	if err != nil {
		t.Fatal(err)
	}
	want := Seq(1)
	for it.Next() {
		if it.Seq() != want {
			t.Fatalf("round %d: log seq %d, want %d (gap or duplicate)", round, it.Seq(), want)
		}
		if got := frameSeq(t, it.Frame()); got != want {
			t.Fatalf("round %d: frame carries seq %d at %d", round, got, want)
		}
		parts := bytes.Split(it.Frame()[8:], []byte("|"))
		if len(parts) != 4 || !bytes.Equal(parts[0], it.DID()) {
			t.Fatalf("round %d: frame %q", round, it.Frame()[8:])
		}
		hid, _ := strconv.ParseUint(string(parts[2]), 10, 32)
		cur, _ := strconv.ParseUint(string(parts[3]), 10, 64)
		accounts[string(parts[0])] = last{rev: string(parts[1])}
		h := hosts[HostID(hid)]
		hosts[HostID(hid)] = last{cursor: cur, events: h.events + 1}
		want++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if want-1 != s.NewestSeq() {
		t.Fatalf("round %d: log ends at %d, newest seq %d", round, want-1, s.NewestSeq())
	}
	perHost := map[HostID]uint64{}
	for d, l := range accounts {
		var a Account
		if ok, err := s.GetAccount([]byte(d), &a); !ok || err != nil {
			t.Fatalf("round %d: account %s: %v %v", round, d, ok, err)
		}
		if string(a.Rev) != l.rev || string(a.Commit) != "c"+l.rev || string(a.Data) != "d"+l.rev {
			t.Fatalf("round %d: %s stored rev %s, log's last %s", round, d, a.Rev, l.rev)
		}
		perHost[a.Host]++
	}
	for id, l := range hosts {
		h, ok := s.GetHost(id)
		if !ok || h.Cursor != l.cursor || h.Events != l.events || h.AccountCount != perHost[id] {
			t.Fatalf("round %d: host %d = %+v, log says cursor %d events %d accounts %d",
				round, id, h, l.cursor, l.events, perHost[id])
		}
	}
}

// TestPowerLossKeepsAcked clones an in-memory filesystem as a power loss
// would leave it (synced data kept, unsynced data kept at random) while
// appends are running, and checks every acknowledged seq survived with the
// log contiguous.
func TestPowerLossKeepsAcked(t *testing.T) {
	for round := 0; round < 30; round++ {
		fs := vfs.NewCrashableMem()
		s := openTest(t, testOptions(fs))
		body := make([]byte, 300)
		batch := make([]Event, 16)
		for i := range batch {
			batch[i] = Event{Kind: KindIdentity, DID: did(i)}
		}
		var acked atomic.Uint64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := appendEvents(s, batch, body, nil)
				if err != nil {
					t.Error(err)
					return
				}
				acked.Store(uint64(res[len(res)-1].Seq))
			}
		}()
		for acked.Load() < uint64(50+round*10) {
			time.Sleep(100 * time.Microsecond)
		}
		ackedBefore := Seq(acked.Load())
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(uint64(round), 3))})
		close(stop)
		<-done
		s.Close()
		s2 := openTest(t, testOptions(clone))
		if s2.NewestSeq() < ackedBefore {
			t.Fatalf("round %d: newest %d below acked %d", round, s2.NewestSeq(), ackedBefore)
		}
		seqs, _ := collect(t, s2, 0)
		for i, seq := range seqs {
			if seq != Seq(i+1) {
				t.Fatalf("round %d: log position %d holds seq %d", round, i, seq)
			}
		}
		if Seq(len(seqs)) != s2.NewestSeq() {
			t.Fatalf("round %d: %d events, newest %d", round, len(seqs), s2.NewestSeq())
		}
		s2.Close()
	}
}
