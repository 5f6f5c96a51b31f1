package pool

import (
	"context"
	"strconv"
	"testing"
)

func BenchmarkBuffersGetPut(b *testing.B) {
	for c := range NumClasses {
		size := ClassSize(c)
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			p := NewBuffers(nil, "bench")
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p.Put(p.Get(size))
				}
			})
		})
	}
}

func BenchmarkFrameRetainRelease(b *testing.B) {
	frames := NewFrames(NewBuffers(nil, "bench"))
	payload := make([]byte, 1932) // p50 frame
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		f := frames.Copy(payload)
		for range 4 { // broadcaster hands the frame to four consumers
			f.Retain()
		}
		for range 5 {
			f.Release()
		}
	}
}

func BenchmarkWorkersSubmit(b *testing.B) {
	p := NewWorkers(WorkersConfig{Workers: 2, QueueItems: 4096}, nil, func(*struct{}, noopTask) {})
	defer p.Close()
	ctx := context.Background()
	key := []byte("did:plc:7iza6de2dwap2sbkpav7c6c6")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var i uint64
		for pb.Next() {
			i++
			key[len(key)-1] = byte('a' + i%26)
			_ = p.SubmitBytes(ctx, key, noopTask{i, i}, 2000)
		}
	})
}
