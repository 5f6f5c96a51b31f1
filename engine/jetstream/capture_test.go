package jetstream

import (
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// TestCaptureStream serves the whole realpds-2 capture (both hosts, 18,694
// frames, FORMAT.md "Counts") through the handler to two subscribers from
// the oldest cursor, one plain and one compressed: each gets one commit
// event per record op (18,616), one per #identity (1,391) and one per
// #account (1,200), in order, with rising stamps and identity/account seqs
// equal to the relay seqs. It logs the bytes a consumer receives for the
// CBOR firehose, Jetstream JSON and compressed JSON.
func TestCaptureStream(t *testing.T) {
	checkNoLeak(t)
	frames := captureFrames(t)
	ts := startServer(t, newFakeSource(), Config{})
	var cborBytes int
	for i, f := range frames {
		// Four relay events per millisecond, so stamps continue within
		// milliseconds and cross seconds.
		ts.src.Append(t, secondMS+int64(i/4), f)
		cborBytes += len(f)
	}
	ts.Notify()
	plain := ts.dial(t, "cursor=0")
	comp := ts.dial(t, "cursor=0&compress=true")

	const commits, identities, accounts = 18_616, 1_391, 1_200
	counts := map[string]int{}
	var jsonBytes, zstdBytes int
	var last int64
	var lastSeq int64
	for range commits + identities + accounts {
		e := plain.event(waitMsg)
		counts[e.Kind]++
		jsonBytes += len(e.raw)
		if e.TimeUS <= last {
			t.Fatalf("stamp %d after %d", e.TimeUS, last)
		}
		last = e.TimeUS
		var seq int64
		switch {
		case e.Identity != nil:
			seq = e.Identity.Seq
		case e.Account != nil:
			seq = e.Account.Seq
		}
		if seq != 0 {
			if seq <= lastSeq {
				t.Fatalf("relay seq %d after %d", seq, lastSeq)
			}
			lastSeq = seq
		}
		b, op := comp.next(waitMsg)
		if op != ws.OpBinary {
			t.Fatalf("compressed subscriber got opcode %v", op)
		}
		zstdBytes += len(b)
	}
	if counts["commit"] != commits || counts["identity"] != identities || counts["account"] != accounts {
		t.Fatalf("counts %v, want %d commit, %d identity, %d account", counts, commits, identities, accounts)
	}
	plain.expectNothing(50 * time.Millisecond)
	t.Logf("capture: %d frames, %d Jetstream events; bytes per consumer: CBOR %d, JSON %d (%.2f× CBOR), zstd JSON %d (%.2f× JSON)",
		len(frames), commits+identities+accounts, cborBytes, jsonBytes, float64(jsonBytes)/float64(cborBytes),
		zstdBytes, float64(zstdBytes)/float64(jsonBytes))
}
