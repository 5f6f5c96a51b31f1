package store

import (
	"errors"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestAdvanceSeqEmptyLog(t *testing.T) {
	fs := vfs.NewMem()
	s := openTest(t, testOptions(fs))
	moved, err := s.AdvanceSeq(5_000_000)
	if err != nil || !moved {
		t.Fatalf("AdvanceSeq = %v, %v", moved, err)
	}
	if s.NewestSeq() != 4_999_999 || s.OldestSeq() != SeqNone {
		t.Fatalf("bounds after advance: oldest %d newest %d", s.OldestSeq(), s.NewestSeq())
	}
	for _, lower := range []Seq{1, 4_999_999, 5_000_000} {
		if moved, err := s.AdvanceSeq(lower); err != nil || moved {
			t.Fatalf("AdvanceSeq(%d) after 5e6 = %v, %v; want no move", lower, moved, err)
		}
	}
	h := mustHost(t, s, "pds.example.com")
	body := []byte("x")
	res, err := appendEvents(s, []Event{{Kind: KindIdentity, DID: did(1), Host: h.ID, Cursor: 1}}, body, nil)
	if err != nil || res[0].Seq != 5_000_000 {
		t.Fatalf("first Append after advance = %+v, %v", res, err)
	}
	if s.OldestSeq() != 5_000_000 {
		t.Fatalf("OldestSeq = %d", s.OldestSeq())
	}
	s = reopen(t, s, fs)
	defer s.Close()
	res, err = appendEvents(s, []Event{{Kind: KindIdentity, DID: did(1), Host: h.ID, Cursor: 2}}, body, nil)
	if err != nil || res[0].Seq != 5_000_001 {
		t.Fatalf("Append after reopen = %+v, %v", res, err)
	}
}

func TestAdvanceSeqAfterEventsLeavesGap(t *testing.T) {
	fs := vfs.NewMem()
	s := openTest(t, testOptions(fs))
	h := mustHost(t, s, "pds.example.com")
	body := []byte("x")
	if _, err := appendEvents(s, []Event{{Kind: KindIdentity, DID: did(1), Host: h.ID, Cursor: 1}}, body, nil); err != nil {
		t.Fatal(err)
	}
	if moved, err := s.AdvanceSeq(100); err != nil || !moved {
		t.Fatalf("AdvanceSeq = %v, %v", moved, err)
	}
	if _, err := appendEvents(s, []Event{{Kind: KindIdentity, DID: did(2), Host: h.ID, Cursor: 2}}, body, nil); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		if s.OldestSeq() != 1 || s.NewestSeq() != 100 {
			t.Fatalf("bounds %d..%d", s.OldestSeq(), s.NewestSeq())
		}
		if seqs, _ := collect(t, s, 0); !slices.Equal(seqs, []Seq{1, 100}) {
			t.Fatalf("replay = %v", seqs)
		}
		if seqs, _ := collect(t, s, 50); !slices.Equal(seqs, []Seq{100}) {
			t.Fatalf("replay from inside the gap = %v", seqs)
		}
	}
	check()
	s = reopen(t, s, fs)
	defer s.Close()
	check()
}

func TestAdvanceSeqBounds(t *testing.T) {
	s := openTest(t, testOptions(vfs.NewMem()))
	defer s.Close()
	for _, bad := range []Seq{SeqNone, MaxSeq + 1} {
		if _, err := s.AdvanceSeq(bad); !errors.Is(err, ErrBadOptions) {
			t.Errorf("AdvanceSeq(%d) = %v", bad, err)
		}
	}
	if moved, err := s.AdvanceSeq(MaxSeq); err != nil || !moved {
		t.Fatalf("AdvanceSeq(MaxSeq) = %v, %v", moved, err)
	}
}

func TestImportTakedown(t *testing.T) {
	fs := vfs.NewMem()
	s := openTest(t, testOptions(fs))
	h := mustHost(t, s, "pds.example.com")
	body := []byte("x")
	// did(1) is known, with an event in the log; did(2) has never been seen.
	if _, err := appendEvents(s, []Event{{Kind: KindCommit, DID: did(1), Host: h.ID, Cursor: 1,
		Rev: rev(1), Commit: []byte("c"), Data: []byte("d")}}, body, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		did     []byte
		created bool
	}{{did(1), false}, {did(2), true}, {did(2), false}, {did(1), false}} {
		created, err := s.ImportTakedown(c.did)
		if err != nil || created != c.created {
			t.Fatalf("ImportTakedown(%s) = %v, %v; want created %v", c.did, created, err, c.created)
		}
	}
	if _, err := s.ImportTakedown(nil); !errors.Is(err, ErrTooLong) {
		t.Fatalf("empty DID: %v", err)
	}
	// A later new account gets the next uid: the import took one.
	if _, err := appendEvents(s, []Event{{Kind: KindIdentity, DID: did(3), Host: h.ID, Cursor: 2}}, body, nil); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		var a Account
		for _, d := range [][]byte{did(1), did(2)} {
			if ok, err := s.GetAccount(d, &a); err != nil || !ok || a.LocalStatus != LocalTakendown || a.Active() {
				t.Fatalf("account %s = %+v (%v %v)", d, a, ok, err)
			}
		}
		if _, _ = s.GetAccount(did(2), &a); a.Host != HostNone || a.UID != 2 || len(a.Rev) != 0 || a.UpstreamStatus != StatusActive {
			t.Fatalf("imported account = %+v", a)
		}
		if _, _ = s.GetAccount(did(3), &a); a.UID != 3 {
			t.Fatalf("account created after the import has uid %d, want 3", a.UID)
		}
		if got, _ := s.GetHost(h.ID); got.AccountCount != 2 {
			t.Fatalf("host account count %d: the imported account must not count", got.AccountCount)
		}
		// The known account's earlier commit is hidden from replay; the
		// identity event of did(3) is not.
		if seqs, _ := collect(t, s, 0); !slices.Equal(seqs, []Seq{2}) {
			t.Fatalf("replay = %v, want [2]", seqs)
		}
		accts, err := s.ListAccounts(0, 10)
		if err != nil || len(accts) != 3 || string(accts[1].DID) != string(did(2)) {
			t.Fatalf("ListAccounts = %+v, %v", accts, err)
		}
	}
	check()
	s = reopen(t, s, fs)
	defer s.Close()
	check()
}
