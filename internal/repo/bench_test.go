package repo

import (
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/atproto/mst"
)

// BenchmarkApply measures one single-create commit on a 1,000-record
// repository, encoded as a frame: the synthetic fleet's cost per event.
func BenchmarkApply(b *testing.B) {
	for _, c := range []atcrypto.Curve{atcrypto.P256, atcrypto.K256} {
		b.Run(c.String(), func(b *testing.B) {
			key, _ := atcrypto.GeneratePrivateKey(c)
			r, _ := New(testDID, key, Options{Now: fixedClock()})
			r.Apply(nil)
			rec := PostRecord("benchmark post", time.Unix(0, 0))
			for i := 0; i < 200; i++ {
				ws := make([]Write, 5)
				for j := range ws {
					ws[j] = Write{Action: mst.ActionCreate, Collection: "app.bsky.feed.post", RKey: r.NextTID(), Record: rec}
				}
				if _, err := r.Apply(ws); err != nil {
					b.Fatal(err)
				}
			}
			var frame []byte
			b.ReportAllocs()
			for b.Loop() {
				ev, err := r.Apply([]Write{{Action: mst.ActionCreate, Collection: "app.bsky.feed.post", RKey: r.NextTID(), Record: rec}})
				if err != nil {
					b.Fatal(err)
				}
				frame = event.AppendCommit(frame[:0], ev)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		})
	}
}
