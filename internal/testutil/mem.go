package testutil

import "runtime"

// LiveBytes returns the heap and goroutine stacks in use after two
// collections: what a test that opens many connections compares before
// and after to learn what each holds.
func LiveBytes() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}
