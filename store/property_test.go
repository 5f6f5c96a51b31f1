package store

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestConditionalRevConcurrentProducers feeds events with random, often
// stale or repeated revs from several producer goroutines into one writer
// goroutine that batches them, then checks every outcome against a model
// of the rule (rev must grow; #sync may repeat it) applied in the writer's
// order, and the stored state and log against the model.
func TestConditionalRevConcurrentProducers(t *testing.T) {
	const producers, perProducer, dids = 4, 600, 12
	s := openTest(t, testOptions(vfs.NewMem()))
	defer s.Close()
	host := mustHost(t, s, "pds.example")

	type item struct {
		ev  Event
		did int
	}
	ch := make(chan item, 64)
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(p), 7))
			for i := 0; i < perProducer; i++ {
				d := r.IntN(dids)
				kind := KindCommit
				if r.IntN(5) == 0 {
					kind = KindSync
				}
				n := i/8 + r.IntN(6) // drifting upwards, often stale
				rv := rev(n)
				ch <- item{did: d, ev: Event{
					Kind: kind, DID: did(d), Host: host.ID, Rev: rv,
					Commit: append([]byte("c"), rv...), Data: append([]byte("d"), rv...),
				}}
			}
		}(p)
	}
	go func() { wg.Wait(); close(ch) }()

	// The single writer: batches of whatever is queued, up to 32.
	model := map[int][]byte{}
	next := Seq(1)
	var written, dropped, same int
	var batch []Event
	var ids []int
	var results []Result
	for it := range ch {
		batch, ids = append(batch[:0], it.ev), append(ids[:0], it.did)
	fill:
		for len(batch) < 32 {
			select {
			case more, ok := <-ch:
				if !ok {
					break fill
				}
				batch, ids = append(batch, more.ev), append(ids, more.did)
			default:
				break fill
			}
		}
		var err error
		results, err = appendFunc(s, batch, func(i int) []byte {
			return append(append([]byte(nil), batch[i].DID...), batch[i].Rev...)
		}, results[:0])
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range results {
			ev := &batch[i]
			stored, known := model[ids[i]]
			want := Written
			switch c := bytes.Compare(ev.Rev, stored); {
			case known && (c < 0 || c == 0 && ev.Kind != KindSync):
				want = DroppedStale
			case known && c == 0:
				want = WrittenSameRev
			}
			if r.Outcome != want {
				t.Fatalf("did %d rev %s (stored %s, kind %v): outcome %v, want %v",
					ids[i], ev.Rev, stored, ev.Kind, r.Outcome, want)
			}
			switch want {
			case DroppedStale:
				dropped++
				if r.Seq != SeqNone {
					t.Fatalf("dropped event has seq %d", r.Seq)
				}
				continue
			case WrittenSameRev:
				same++
			default:
				written++
				model[ids[i]] = ev.Rev
			}
			if r.Seq != next {
				t.Fatalf("seq %d, want %d", r.Seq, next)
			}
			next++
		}
	}
	if dropped == 0 || same == 0 || written == 0 {
		t.Fatalf("workload too tame: %d written, %d same-rev, %d dropped", written, same, dropped)
	}

	// Stored state equals the model, and the log's last rev per DID too.
	lastInLog := map[string][]byte{}
	it, err := s.NewIterator(0)
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for it.Next() {
		count++
		body := it.Frame()[8:]
		d, rv := string(body[:len(body)-13]), body[len(body)-13:]
		if prev, ok := lastInLog[d]; ok && bytes.Compare(rv, prev) < 0 {
			t.Fatalf("log rev went back for %s: %s after %s", d, rv, prev)
		}
		lastInLog[d] = append([]byte(nil), rv...)
	}
	if err := it.Close(); err != nil || count != written+same {
		t.Fatalf("log has %d events (%v), want %d", count, err, written+same)
	}
	for d, want := range model {
		var a Account
		if ok, err := s.GetAccount(did(d), &a); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if !bytes.Equal(a.Rev, want) || !bytes.Equal(a.Commit[1:], want) || !bytes.Equal(a.Data[1:], want) {
			t.Fatalf("did %d stored rev %s commit %s, model %s", d, a.Rev, a.Commit, want)
		}
		if !bytes.Equal(lastInLog[string(did(d))], want) {
			t.Fatalf("did %d log's last rev %s, model %s", d, lastInLog[string(did(d))], want)
		}
	}
	if h, _ := s.GetHost(host.ID); h.AccountCount != uint64(len(model)) {
		t.Fatalf("host account count %d, want %d", h.AccountCount, len(model))
	}
}
