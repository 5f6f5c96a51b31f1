package event_test

import (
	"errors"
	"testing"

	"github.com/atrelay/relay/engine/atproto/event"
)

func peekFrames() map[string][]byte {
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
		var p event.Peeked
		if err := event.Peek(peekFrames()[name], &p); err != nil {
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

	var p event.Peeked
	for _, bad := range [][]byte{nil, {0xa1}, {0x01}, {0xbf}, {0xa1, 0x61, 0x74}} {
		if err := event.Peek(bad, &p); err == nil {
			t.Errorf("Peek(%x) accepted", bad)
		}
	}
}

func TestPeekAllocs(t *testing.T) {
	fr := peekFrames()["identity"]
	var p event.Peeked
	if n := testing.AllocsPerRun(100, func() { _ = event.Peek(fr, &p) }); n != 0 {
		t.Fatalf("Peek allocates %v times", n)
	}
}

func FuzzPeek(f *testing.F) {
	for _, fr := range peekFrames() {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p event.Peeked
		_ = event.Peek(b, &p)
	})
}

func BenchmarkPeek(b *testing.B) {
	fr := peekFrames()["sync"]
	var p event.Peeked
	b.ReportAllocs()
	b.SetBytes(int64(len(fr)))
	for b.Loop() {
		_ = event.Peek(fr, &p)
	}
}

func TestPeekHeader(t *testing.T) {
	f := func(name, frame string, want event.Kind, wantErr error) {
		t.Helper()
		kind, _, err := event.PeekHeader([]byte(frame))
		if kind != want || !errors.Is(err, wantErr) {
			t.Errorf("%s: PeekHeader = %v, %v; want %v, %v", name, kind, err, want, wantErr)
		}
	}
	f("commit", "\xa2\x61t\x67#commit\x62op\x01\xa0", event.KindCommit, nil)
	f("op before t", "\xa2\x62op\x20\x61t\x67#commit\xa0", event.KindError, nil)
	f("last op wins", "\xa2\x62op\x01\x62op\x20\xa0", event.KindError, nil)
	f("last op wins, not error", "\xa2\x62op\x20\x62op\x02\xa0", event.KindUnknown, nil)
	f("op -2", "\xa1\x62op\x21\xa0", event.KindUnknown, nil)
	f("unknown type", "\xa2\x61t\x64#new\x62op\x01\xa0", event.KindUnknown, nil)
	f("extra key", "\xa3\x61t\x65#info\x61x\x82\x01\x02\x62op\x01\xa0", event.KindInfo, nil)
	f("no op", "\xa1\x61t\x67#commit\xa0", event.KindUnknown, event.ErrPeekHeader)
	f("t not text", "\xa2\x61t\x01\x62op\x20\xa0", event.KindUnknown, event.ErrPeekHeader)
	f("op as text", "\xa1\x62op\x62-1", event.KindUnknown, event.ErrPeekHeader)
	f("op too big", "\xa1\x62op\x1b\x7f\xff\xff\xff\xff\xff\xff\xff", event.KindUnknown, event.ErrPeekHeader)
	f("non-text key", "\xa2\x01\x02\x62op\x20", event.KindUnknown, event.ErrPeekHeader)
	f("truncated", "\xa2\x62op\x20", event.KindUnknown, event.ErrPeekHeader)
	f("not a map", "\x80", event.KindUnknown, event.ErrPeekHeader)
	f("empty", "", event.KindUnknown, event.ErrPeekHeader)
	f("too many entries", "\xb8\x41\x62op\x20", event.KindUnknown, event.ErrPeekTooLong)
}
