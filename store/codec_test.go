package store

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestDocWorkedExample checks the bytes the package doc shows.
func TestDocWorkedExample(t *testing.T) {
	ms := time.Date(2026, 11, 25, 22, 17, 57, 806e6, time.UTC).UnixMilli()
	key := appendEventKey(nil, 5)
	val := appendEventValue(nil, KindCommit, ms, []byte("did:plc:abc"))
	tkey := appendU64Key(nil, prefixTime, uint64(ms/1000))
	f := func(got []byte, want string) {
		t.Helper()
		if h := hex.EncodeToString(got); h != strings.ReplaceAll(want, " ", "") {
			t.Fatalf("got % x, want %s", got, want)
		}
	}
	f(key, "02 00 00 00 00 00 00 00 05")
	f(val, "01 01 00 00 00 01 a2 14 c9 79 2e 0b 64 69 64 3a 70 6c 63 3a 61 62 63")
	f(tkey, "08 00 00 00 00 6b 07 5e 95")
	if ms/1000 != 1795645077 {
		t.Fatalf("second %d", ms/1000)
	}
}

func TestAccountHostRoundTrip(t *testing.T) {
	a := Account{UID: 42, Host: 3, UpstreamStatus: StatusDeactivated, LocalStatus: LocalThrottled,
		LastSeenMilli: 1_700_000_000_000, Rev: rev(9), Commit: []byte{1, 0x71, 0x12, 0x20, 9}, Data: []byte{7}}
	var b Account
	if err := decodeAccount(appendAccountValue(nil, &a), &b); err != nil {
		t.Fatal(err)
	}
	b.DID = a.DID
	if !accountsEqual(&a, &b) {
		t.Fatalf("round trip %+v → %+v", a, b)
	}
	h := Host{ID: 9, Hostname: "pds.example", Status: HostThrottled, Trusted: true, Cursor: 77,
		AccountLimit: 100, AccountCount: 3, Events: 1e9, FirstSeenMilli: 1, LastConnectMilli: 2,
		LastErrorMilli: 3, LastError: "boom"}
	h2, err := decodeHost(9, appendHostValue(nil, &h))
	if err != nil || h2 != h {
		t.Fatalf("host round trip %+v → %+v (%v)", h, h2, err)
	}
}

func accountsEqual(a, b *Account) bool {
	return a.UID == b.UID && a.Host == b.Host && a.UpstreamStatus == b.UpstreamStatus &&
		a.LocalStatus == b.LocalStatus && a.LastSeenMilli == b.LastSeenMilli &&
		bytes.Equal(a.Rev, b.Rev) && bytes.Equal(a.Commit, b.Commit) && bytes.Equal(a.Data, b.Data)
}

// FuzzDecodeEvent: no input panics; a decoded event re-encodes to the
// same bytes.
func FuzzDecodeEvent(f *testing.F) {
	f.Add(appendEventValue(nil, KindCommit, 1, []byte("did:plc:abc")))
	f.Add(append(appendEventValue(nil, KindSync, 1<<40, nil), "frame"...))
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		var ev eventView
		if err := decodeEvent(v, &ev); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		again := append(appendEventValue(nil, ev.kind, ev.unixMilli, ev.did), ev.frame...)
		if v[2] == 0 && !bytes.Equal(again, v) && canonicalUvarint(v[eventHeaderLen:]) {
			t.Fatalf("re-encode %x → %x", v, again)
		}
	})
}

// canonicalUvarint reports whether b starts with a minimal-length uvarint,
// the only form the encoder writes.
func canonicalUvarint(b []byte) bool {
	for i, c := range b {
		if c < 0x80 {
			return i == 0 || c != 0
		}
	}
	return false
}

// FuzzDecodeAccount: no input panics; errors are typed.
func FuzzDecodeAccount(f *testing.F) {
	f.Add(appendAccountValue(nil, &Account{UID: 1, Host: 1, UpstreamStatus: StatusActive, LocalStatus: LocalActive, Rev: rev(1)}))
	f.Add(make([]byte, accountFixedLen))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, v []byte) {
		var a Account
		if err := decodeAccount(v, &a); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		var b Account
		if err := decodeAccount(appendAccountValue(nil, &a), &b); err != nil || !accountsEqual(&a, &b) {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

// FuzzDecodeHost: no input panics; errors are typed.
func FuzzDecodeHost(f *testing.F) {
	f.Add(appendHostValue(nil, &Host{Hostname: "a.example", Status: HostActive, LastError: "x"}))
	f.Add(make([]byte, hostFixedLen))
	f.Fuzz(func(t *testing.T, v []byte) {
		h, err := decodeHost(1, v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		h2, err := decodeHost(1, appendHostValue(nil, &h))
		if err != nil || h2 != h {
			t.Fatalf("re-decode %+v → %+v: %v", h, h2, err)
		}
	})
}

// FuzzAppendReplay drives the store with arbitrary event fields: nothing
// panics, refusals are typed, and what was written replays intact.
func FuzzAppendReplay(f *testing.F) {
	f.Add([]byte("did:plc:abc"), []byte("3n366y645uj2b"), []byte("frame"), uint8(1), uint8(0))
	f.Add([]byte{}, []byte{}, []byte{}, uint8(0), uint8(9))
	f.Add(bytes.Repeat([]byte{0xff}, 3000), []byte("z"), []byte{0}, uint8(2), uint8(4))
	f.Fuzz(func(t *testing.T, didB, revB, body []byte, kind, status uint8) {
		s := openTest(t, testOptions(vfs.NewMem()))
		defer s.Close()
		ev := Event{Kind: Kind(kind), DID: didB, Rev: revB, Status: AccountStatus(status)}
		res, err := appendEvents(s, []Event{ev, ev}, body, nil)
		if err != nil {
			for _, want := range []error{ErrBadKind, ErrTooLong, ErrBadStatus} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("untyped refusal %v", err)
		}
		seqs, frames := collect(t, s, 0)
		n := 0
		for _, r := range res {
			if r.Seq != SeqNone {
				n++
			}
		}
		if len(seqs) != n {
			t.Fatalf("%d written, %d replayed", n, len(seqs))
		}
		for i, fr := range frames {
			if frameSeq(t, fr) != seqs[i] || !bytes.Equal(fr[8:], body) {
				t.Fatalf("frame %d = %x", i, fr)
			}
		}
	})
}
