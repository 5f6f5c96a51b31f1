package firehose

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// decodeTwo splits a frame into its header and body maps and checks that
// each is canonical (DAG-CBOR key order = CTAP2 length-first).
func decodeTwo(t *testing.T, frame []byte) (hdr, body map[string]any) {
	t.Helper()
	dec := cbor.NewDecoder(bytes.NewReader(frame))
	if err := dec.Decode(&hdr); err != nil {
		t.Fatalf("header: %v", err)
	}
	off := dec.NumBytesRead()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("body: %v", err)
	}
	if dec.NumBytesRead() != len(frame) {
		t.Fatalf("%d trailing bytes", len(frame)-dec.NumBytesRead())
	}
	em, err := cbor.CTAP2EncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := em.Marshal(hdr)
	b2, _ := em.Marshal(body)
	if !bytes.Equal(append(h2, b2...), frame) || !bytes.Equal(h2, frame[:off]) {
		t.Fatalf("not canonical:\n got %x\nwant %x%x", frame, h2, b2)
	}
	return hdr, body
}

func TestControlFramesCanonical(t *testing.T) {
	f := func(name string, frame []byte, wantHex string, wantHdr, wantBody map[string]any) {
		t.Run(name, func(t *testing.T) {
			if wantHex != "" && hex.EncodeToString(frame) != wantHex {
				t.Fatalf("bytes\n got %x\nwant %s", frame, wantHex)
			}
			hdr, body := decodeTwo(t, frame)
			for k, v := range wantHdr {
				if hdr[k] != v {
					t.Fatalf("header %s = %v, want %v (%v)", k, hdr[k], v, hdr)
				}
			}
			if wantBody == nil {
				return
			}
			if len(body) != len(wantBody) {
				t.Fatalf("body %v, want %v", body, wantBody)
			}
			for k, v := range wantBody {
				if body[k] != v {
					t.Fatalf("body %s = %v, want %v", k, body[k], v)
				}
			}
		})
	}
	// {op:-1} {error:"FutureCursor"}
	f("error without message", appendErrorFrame(nil, "FutureCursor", ""),
		"a1626f7020"+"a1656572726f72"+"6c467574757265437572736f72",
		map[string]any{"op": int64(-1)}, map[string]any{"error": "FutureCursor"})
	// {t:"#info",op:1} {name:"OutdatedCursor"}
	f("info without message", appendInfoFrame(nil, "OutdatedCursor", ""),
		"a2617465"+"23696e666f"+"626f7001"+"a1646e616d65"+"6e4f757464617465644375"+"72736f72",
		map[string]any{"t": "#info", "op": uint64(1)}, map[string]any{"name": "OutdatedCursor"})
	cf := newControlFrames()
	f("FutureCursor", cf.futureCursor, "", map[string]any{"op": int64(-1)},
		map[string]any{"error": "FutureCursor", "message": "cursor is beyond the newest event"})
	f("ConsumerTooSlow", cf.consumerTooSlow, "", map[string]any{"op": int64(-1)},
		map[string]any{"error": "ConsumerTooSlow", "message": "consumer fell out of the replay window"})
	f("OutdatedCursor", cf.outdatedCursor, "", map[string]any{"t": "#info", "op": uint64(1)},
		map[string]any{"name": "OutdatedCursor",
			"message": "requested cursor is older than the replay window; starting from the oldest event"})
	long := string(bytes.Repeat([]byte("x"), 300))
	f("long message", appendErrorFrame(nil, "X", long), "", map[string]any{"op": int64(-1)},
		map[string]any{"error": "X", "message": long})
	f("test frame", appendTestFrame(nil, 1<<40, 70000), "", map[string]any{"t": "#commit", "op": uint64(1)}, nil)
}

func TestParseCursor(t *testing.T) {
	f := func(in string, want uint64, wantOK bool, wantErr error) {
		t.Helper()
		got, ok, err := parseCursor(in)
		if got != want || ok != wantOK || !errors.Is(err, wantErr) || (wantErr == nil) != (err == nil) {
			t.Errorf("parseCursor(%q) = %d, %v, %v; want %d, %v, %v", in, got, ok, err, want, wantOK, wantErr)
		}
	}
	f("", 0, false, nil)
	f("0", 0, true, nil)
	f("42", 42, true, nil)
	f("18446744073709551615", 1<<64-1, true, nil)
	f("18446744073709551616", 0, false, ErrCursorRange)
	f("-1", 0, false, ErrCursorNegative)
	f("-99999999999999999999", 0, false, ErrCursorNegative)
	f("-", 0, false, ErrCursorSyntax)
	f("-x", 0, false, ErrCursorSyntax)
	f("+1", 0, false, ErrCursorSyntax)
	f("1.5", 0, false, ErrCursorSyntax)
	f("0x10", 0, false, ErrCursorSyntax)
	f("1_000", 0, false, ErrCursorSyntax)
	f(" 1", 0, false, ErrCursorSyntax)
}

func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"", "0", "17", "-1", "abc", "1e3", "99999999999999999999", "-", "+5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok, err := parseCursor(s)
		if err != nil && ok {
			t.Fatal("error with ok")
		}
		if ok {
			if got, ok2, err2 := parseCursor(uitoa(n)); got != n || !ok2 || err2 != nil {
				t.Fatalf("round trip of %d failed", n)
			}
		}
	})
}

func uitoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
