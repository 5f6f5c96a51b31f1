package pool_test

import (
	"context"
	"fmt"

	"github.com/VictoriaMetrics/metrics"
	"github.com/atrelay/relay/pool"
)

// A frame is filled once, shared with every consumer, and its buffer goes
// back to the pool when the last consumer releases it.
func ExampleFrames() {
	frames := pool.NewFrames(pool.NewBuffers(metrics.NewSet(), "frames"))
	f := frames.Copy([]byte("#commit"))
	consumers := 3
	for range consumers {
		f.Retain()
	}
	for range consumers {
		fmt.Println(string(f.Bytes()))
		f.Release()
	}
	f.Release() // the producer's own reference
	// Output:
	// #commit
	// #commit
	// #commit
}

// Tasks for one DID always run on the same worker, in order, with that
// worker's scratch state.
func ExampleWorkers() {
	type task struct{ seq int }
	type scratch struct{ handled []int }
	done := make(chan []int, 1)
	p := pool.NewWorkers(pool.WorkersConfig{Workers: 4},
		func(int) scratch { return scratch{} },
		func(s *scratch, t task) {
			s.handled = append(s.handled, t.seq)
			if t.seq == 3 {
				done <- s.handled
			}
		})
	did := []byte("did:plc:7iza6de2dwap2sbkpav7c6c6")
	for i := 1; i <= 3; i++ {
		_ = p.SubmitBytes(context.Background(), did, task{i}, 0)
	}
	fmt.Println(<-done)
	_ = p.Close()
	// Output: [1 2 3]
}
