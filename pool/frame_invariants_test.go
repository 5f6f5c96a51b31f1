//go:build invariants

package pool

import "testing"

func TestFrameInvariantsCatchUseAfterRelease(t *testing.T) {
	frames := NewFrames(NewBuffers(nil, "t"))
	f := frames.Copy([]byte("abc"))
	stale := f.Bytes()
	f.Release()
	mustPanic(t, "Bytes after release", func() { f.Bytes() })
	for _, c := range stale[:cap(stale)] {
		if c != 0xff && c != pooledMark {
			t.Fatalf("released bytes not poisoned: %x", stale[:8])
		}
	}
	// The header is never recycled, so a late double release still sees
	// its own count, even after other frames come and go.
	g := frames.Get(3)
	if g == f {
		t.Fatal("invariants build recycled a frame header")
	}
	mustPanic(t, "double Release after reuse", f.Release)
	mustPanic(t, "Retain after release", func() { f.Retain() })
	g.Release()
}
