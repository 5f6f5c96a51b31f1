package store

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestHostThrottledRows checks the throttled-account lifecycle: a row
// without an event, not counted, surviving a reopen, found by
// ScanAccounts, released into the count, and refused twice.
func TestHostThrottledRows(t *testing.T) {
	fs := vfs.NewMem()
	s := openTest(t, testOptions(fs))
	h := mustHost(t, s, "a.example")
	created, err := s.MarkHostThrottled(did(1), h.ID)
	if err != nil || !created {
		t.Fatalf("MarkHostThrottled: %v %v", created, err)
	}
	if created, err := s.MarkHostThrottled(did(1), h.ID); err != nil || created {
		t.Fatalf("second MarkHostThrottled: %v %v", created, err)
	}
	if _, err := s.MarkHostThrottled(did(2), h.ID+99); !errors.Is(err, ErrNoHost) {
		t.Fatalf("unknown host: %v", err)
	}
	if s.NewestSeq() != SeqNone {
		t.Fatalf("throttling logged an event: newest %d", s.NewestSeq())
	}
	// A normal account created afterwards gets the next uid.
	if _, err := appendEvents(s, []Event{{Kind: KindIdentity, DID: did(3), Host: h.ID}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, fs)
	defer s.Close()
	if hh, _ := s.GetHost(h.ID); hh.AccountCount != 1 {
		t.Fatalf("account count %d, want 1 (throttled rows are not counted)", hh.AccountCount)
	}
	list, err := s.ListAccounts(0, 10)
	if err != nil || len(list) != 2 || list[0].UID != 1 || list[1].UID != 2 || list[0].LocalStatus != LocalHostThrottled {
		t.Fatalf("ListAccounts: %v %+v", err, list)
	}
	var seen []string
	if err := s.ScanAccounts(func(a *Account) bool {
		if a.LocalStatus == LocalHostThrottled {
			seen = append(seen, string(a.DID))
		}
		return true
	}); err != nil || len(seen) != 1 || seen[0] != string(did(1)) {
		t.Fatalf("ScanAccounts: %v %v", err, seen)
	}
	n := 0
	if err := s.ScanAccounts(func(*Account) bool { n++; return false }); err != nil || n != 1 {
		t.Fatalf("ScanAccounts stop: %v %d", err, n)
	}

	if _, err := s.ReleaseThrottled(did(1), LocalTakendown); !errors.Is(err, ErrBadStatus) {
		t.Fatalf("release to a hiding status: %v", err)
	}
	if _, err := s.ReleaseThrottled(did(9), LocalActive); !errors.Is(err, ErrNoAccount) {
		t.Fatalf("release unknown: %v", err)
	}
	if ok, err := s.ReleaseThrottled(did(1), LocalDesynchronized); err != nil || !ok {
		t.Fatalf("ReleaseThrottled: %v %v", ok, err)
	}
	if ok, err := s.ReleaseThrottled(did(1), LocalDesynchronized); err != nil || ok {
		t.Fatalf("second ReleaseThrottled: %v %v", ok, err)
	}
	var a Account
	if ok, err := s.GetAccount(did(1), &a); !ok || err != nil || a.LocalStatus != LocalDesynchronized {
		t.Fatalf("released account: %v %v %v", ok, err, a.LocalStatus)
	}
	if hh, _ := s.GetHost(h.ID); hh.AccountCount != 2 {
		t.Fatalf("account count %d after release, want 2", hh.AccountCount)
	}
}

// TestEventLocalStatus checks Event.Local: applied with the event, not
// applied when the event is stale, hiding statuses refused.
func TestEventLocalStatus(t *testing.T) {
	s := openTest(t, testOptions(vfs.NewMem()))
	defer s.Close()
	h := mustHost(t, s, "a.example")
	var body []byte
	ev := func(n int, local LocalStatus) Event {
		return Event{Kind: KindCommit, DID: did(1), Host: h.ID, Rev: rev(n), Commit: []byte{1}, Data: []byte{2}, Local: local}
	}
	local := func() LocalStatus {
		var a Account
		if ok, err := s.GetAccount(did(1), &a); !ok || err != nil {
			t.Fatal(ok, err)
		}
		return a.LocalStatus
	}
	if _, err := appendEvents(s, []Event{ev(2, LocalDesynchronized)}, body, nil); err != nil || local() != LocalDesynchronized {
		t.Fatalf("mark: %v %v", err, local())
	}
	if res, err := appendEvents(s, []Event{ev(1, LocalActive)}, body, nil); err != nil || res[0].Outcome != DroppedStale || local() != LocalDesynchronized {
		t.Fatalf("stale event changed the mark: %v %v", err, local())
	}
	if _, err := appendEvents(s, []Event{ev(3, 0)}, body, nil); err != nil || local() != LocalDesynchronized {
		t.Fatalf("zero Local changed the mark: %v %v", err, local())
	}
	if _, err := appendEvents(s, []Event{ev(4, LocalActive)}, body, nil); err != nil || local() != LocalActive {
		t.Fatalf("clear: %v %v", err, local())
	}
	for _, bad := range []LocalStatus{LocalTakendown, LocalSuspended, 77} {
		if _, err := appendEvents(s, []Event{ev(9, bad)}, body, nil); !errors.Is(err, ErrBadStatus) {
			t.Fatalf("Local %d: %v", bad, err)
		}
	}
	if _, err := appendEvents(s, []Event{{Kind: KindIdentity, Local: LocalActive}}, body, nil); err == nil {
		t.Fatal("Local without DID accepted")
	}
}
