package event_test

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/atrelay/relay/engine/atproto/dagcbor"
	"github.com/atrelay/relay/engine/atproto/event"
)

func FuzzDecode(f *testing.F) {
	frames := loadCaptures(f)[0]
	for _, fr := range frames[:6] { // identity, account, commit, sync of a new account
		f.Add(fr)
	}
	f.Add(medianCommit(f))
	for _, ff := range relayFixtureFrames(f)[:6] {
		f.Add(ff.frame)
	}
	f.Add(event.AppendError(nil, &event.ErrorFrame{Error: []byte("FutureCursor"), Message: []byte("m")}))
	f.Add(event.AppendInfo(nil, &event.Info{Name: []byte("OutdatedCursor")}))
	f.Add([]byte{0xa1, 0x62, 'o', 'p', 0x02, 0xa0})
	f.Fuzz(func(t *testing.T, fr []byte) {
		var d event.Decoder
		var m event.Message
		err := d.Decode(fr, &m)
		if rw, rerr := event.RewriteSeq(nil, fr, 12345); rerr == nil {
			// RewriteSeq checks form, not fields: when the frame also
			// decodes and re-encodes to itself, the rewrite must equal a
			// re-encode with the new seq, and must itself be canonical.
			if hn, verr := dagcbor.ValidateFirst(rw); verr != nil || dagcbor.Validate(rw[hn:]) != nil {
				t.Fatalf("RewriteSeq output not canonical: %v", verr)
			}
			if enc, _ := event.AppendMessage(nil, &m); err == nil && bytes.Equal(enc, fr) {
				full, _ := event.AppendWithSeq(nil, &m, 12345)
				if !bytes.Equal(rw, full) {
					t.Fatalf("RewriteSeq differs from re-encode")
				}
			}
		}
		// The unchecked rewrite takes any bytes without panicking, and on
		// frames that pass the checked one it gives the same result.
		rwe, eerr := event.RewriteEncodedSeq(nil, fr, 12345)
		if rw, rerr := event.RewriteSeq(nil, fr, 12345); rerr == nil && (eerr != nil || !bytes.Equal(rw, rwe)) {
			t.Fatalf("RewriteEncodedSeq differs from RewriteSeq on a canonical frame (%v)", eerr)
		}
		if err != nil || m.Kind == event.KindUnknown {
			return
		}
		enc, err := event.AppendMessage(nil, &m)
		if err != nil {
			t.Fatal(err)
		}
		hn, err := dagcbor.ValidateFirst(enc)
		if err != nil || dagcbor.Validate(enc[hn:]) != nil {
			t.Fatalf("encoder output not canonical: %v", err)
		}
		var m2 event.Message
		if err := d.Decode(enc, &m2); err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
		enc2, _ := event.AppendMessage(nil, &m2)
		if !bytes.Equal(enc, enc2) {
			t.Fatal("encode(decode(encode(x))) != encode(x)")
		}
	})
}

// TestAllocationBound: hostile frames full of unknown keys (the one input
// shape for which fxamacker allocates, to detect duplicate unknown keys)
// cost a bounded multiple of their size.
func TestAllocationBound(t *testing.T) {
	body := dagcbor.AppendMapHeader(nil, 20000)
	for i := range 20000 {
		body = dagcbor.AppendText(body, []byte{'k', byte('a' + i%26), byte('a' + i/26%26), byte('a' + i/676%26)})
		body = dagcbor.AppendNull(body)
	}
	fr := append([]byte(hdrCommit), body...)
	var d event.Decoder
	var m event.Message
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_ = d.Decode(fr, &m)
	runtime.ReadMemStats(&after)
	if perByte := float64(after.TotalAlloc-before.TotalAlloc) / float64(len(fr)); perByte > 64 {
		t.Errorf("decoding allocated %.1f bytes per input byte", perByte)
	}
}
