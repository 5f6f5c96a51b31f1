package relay

import "sync"

// trackerKeepCap is the most seqs an idle tracker keeps room for.
const trackerKeepCap = 64

// tracker follows the upstream seqs of one host that were handed to the
// pipeline and not yet completed, so the persisted cursor is the low-water
// mark: every seq at or below it has been fully processed (spec §14.4).
// Seqs are registered in increasing order by the host's Sink and completed
// in any order by the sequencer. A generation number lets a cursor reset
// (FutureCursor, a host whose seq went backwards) orphan everything still
// in flight from before.
//
// Safe for concurrent use: every field is guarded by mu.
type tracker struct {
	mu   sync.Mutex
	gen  uint64
	low  int64   // every registered seq ≤ low is complete
	last int64   // highest registered seq
	seqs []int64 // registered, not yet popped, increasing; from head
	// state of seqs[i]: seqDone once completed; seqParked while its frame
	// waits on its worker for an identity resolution (markParked).
	state []uint8
	head  int
}

// Tracker states of a registered seq.
const (
	seqDone   uint8 = 1 << iota // completed
	seqParked                   // parked for an identity (park.go)
)

// reset forgets everything in flight and restarts at cursor.
func (t *tracker) reset(cursor int64) {
	t.mu.Lock()
	t.gen++
	t.low, t.last = cursor, cursor
	t.seqs, t.state, t.head = t.seqs[:0], t.state[:0], 0
	t.mu.Unlock()
}

// register records seq as in flight and returns its generation. The caller
// guarantees seq > last (the Sink drops anything else first).
func (t *tracker) register(seq int64) uint64 {
	t.mu.Lock()
	if t.head > 0 && t.head >= len(t.seqs)/2 {
		n := copy(t.seqs, t.seqs[t.head:])
		copy(t.state, t.state[t.head:])
		t.seqs, t.state, t.head = t.seqs[:n], t.state[:n], 0
	}
	t.seqs = append(t.seqs, seq)
	t.state = append(t.state, 0)
	t.last = seq
	g := t.gen
	t.mu.Unlock()
	return g
}

// lastSeq returns the highest registered seq.
func (t *tracker) lastSeq() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

// generation returns the current generation (bumped by reset).
func (t *tracker) generation() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gen
}

// lowWater returns the current low-water mark.
func (t *tracker) lowWater() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.low
}

// complete marks seq of generation gen as processed and returns the new
// low-water mark and whether it moved. Completions of an older generation
// are ignored.
func (t *tracker) complete(gen uint64, seq int64) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen != t.gen {
		return t.low, false
	}
	i, ok := t.find(seq)
	if !ok {
		return t.low, false
	}
	t.state[i] |= seqDone
	moved := false
	for t.head < len(t.seqs) && t.state[t.head]&seqDone != 0 {
		t.low = t.seqs[t.head]
		t.head++
		moved = true
	}
	if t.head == len(t.seqs) {
		t.seqs, t.state, t.head = t.seqs[:0], t.state[:0], 0
		if cap(t.seqs) > trackerKeepCap {
			// A burst is over: a host does not keep its largest burst's
			// arrays for as long as it is subscribed (HostStateBytes).
			t.seqs, t.state = nil, nil
		}
	}
	return t.low, moved
}

// find returns the index in seqs of the registered, not yet popped seq.
// The caller holds mu.
func (t *tracker) find(seq int64) (int, bool) {
	live := t.seqs[t.head:]
	lo, hi := 0, len(live)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if live[mid] < seq {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return t.head + lo, lo < len(live) && live[lo] == seq
}

// markParked records that seq of generation gen waits on its worker for
// an identity resolution, and reports whether it is the host's lowest
// incomplete seq: then the results the sequencer holds behind it may pass
// it (sequencer.passHeld), and it should be told.
func (t *tracker) markParked(gen uint64, seq int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen != t.gen {
		return false
	}
	i, ok := t.find(seq)
	if !ok || t.state[i]&seqDone != 0 {
		return false
	}
	t.state[i] |= seqParked
	return i == t.head
}

// headParked reports whether the host's lowest incomplete seq is of
// generation gen and parked for an identity (markParked).
func (t *tracker) headParked(gen uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return gen == t.gen && t.head < len(t.seqs) && t.state[t.head]&seqParked != 0
}
