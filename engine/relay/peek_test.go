package relay

import (
	"testing"

	"github.com/atrelay/relay/engine/event"
)

func sampleFrames() map[string][]byte {
	tm := []byte("2026-11-25T22:17:57.806Z")
	h := []byte("alice.test")
	return map[string][]byte{
		"identity": event.AppendIdentity(nil, &event.Identity{Seq: 7, DID: []byte("did:plc:abc"), Time: tm, Handle: h}),
		"account":  event.AppendAccount(nil, &event.Account{Seq: 8, DID: []byte("did:plc:abc"), Time: tm, Active: true}),
		"info":     event.AppendInfo(nil, &event.Info{Name: []byte("OutdatedCursor")}),
		"error":    event.AppendError(nil, &event.ErrorFrame{Error: []byte("FutureCursor")}),
		"sync":     event.AppendSync(nil, &event.Sync{Seq: 9, DID: []byte("did:plc:abc"), Rev: []byte("3n366y645uj2b"), Blocks: []byte{1}, Time: tm}),
	}
}

func TestPeek(t *testing.T) {
	f := func(name string, kind event.Kind, seq int64, did, nm string) {
		t.Helper()
		var p Peeked
		if err := Peek(sampleFrames()[name], &p); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.Kind != kind || p.Seq != seq || string(p.DID) != did || string(p.Name) != nm {
			t.Fatalf("%s: got %v %d %q %q", name, p.Kind, p.Seq, p.DID, p.Name)
		}
	}
	f("identity", event.KindIdentity, 7, "did:plc:abc", "")
	f("account", event.KindAccount, 8, "did:plc:abc", "")
	f("sync", event.KindSync, 9, "did:plc:abc", "")
	f("info", event.KindInfo, 0, "", "OutdatedCursor")
	f("error", event.KindError, 0, "", "FutureCursor")

	var p Peeked
	for _, bad := range [][]byte{nil, {0xa1}, {0x01}, {0xbf}, {0xa1, 0x61, 0x74}} {
		if err := Peek(bad, &p); err == nil {
			t.Errorf("Peek(%x) accepted", bad)
		}
	}
}

func TestPeekAllocs(t *testing.T) {
	fr := sampleFrames()["identity"]
	var p Peeked
	if n := testing.AllocsPerRun(100, func() { _ = Peek(fr, &p) }); n != 0 {
		t.Fatalf("Peek allocates %v times", n)
	}
}

func FuzzPeek(f *testing.F) {
	for _, fr := range sampleFrames() {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Peeked
		_ = Peek(b, &p)
	})
}

func BenchmarkPeek(b *testing.B) {
	fr := sampleFrames()["sync"]
	var p Peeked
	b.ReportAllocs()
	b.SetBytes(int64(len(fr)))
	for b.Loop() {
		_ = Peek(fr, &p)
	}
}

func TestTracker(t *testing.T) {
	var tr tracker
	tr.reset(10)
	g := tr.register(11)
	tr.register(12)
	tr.register(15)
	if low, moved := tr.complete(g, 12); moved || low != 10 {
		t.Fatalf("completing 12 before 11 moved the mark to %d", low)
	}
	if low, _ := tr.complete(g, 11); low != 12 {
		t.Fatalf("low %d, want 12", low)
	}
	tr.reset(0)
	if low, moved := tr.complete(g, 15); moved || low != 0 {
		t.Fatal("a completion from an old generation moved the mark")
	}
	g2 := tr.register(1)
	if low, _ := tr.complete(g2, 1); low != 1 {
		t.Fatalf("low %d, want 1", low)
	}
	if tr.lastSeq() != 1 {
		t.Fatal("lastSeq")
	}
}

func TestBucket(t *testing.T) {
	var b bucket
	now := testEpoch
	b.init(2, now)
	for i := 0; i < 2; i++ {
		if _, ok := b.take(now); !ok {
			t.Fatal("burst refused")
		}
	}
	wait, ok := b.take(now)
	if ok || wait <= 0 {
		t.Fatalf("third event in the same instant: ok=%v wait=%v", ok, wait)
	}
}
