package relay

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestHeldTickets: tickets added in ascending order per worker and removed
// at random; the lowest is always the model's, and the queues do not grow
// with what has left (gone tickets are dropped once they outnumber the
// live ones).
func TestHeldTickets(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	h := make(heldTickets, 2)
	live := make([][]uint64, 2) // the model, ascending
	next := uint64(1)
	for step := range 20000 {
		w := rng.IntN(2)
		if len(live[w]) == 0 || rng.IntN(2) == 0 {
			h.add(w, next)
			live[w] = append(live[w], next)
			next++
		} else {
			// Mostly the oldest or the newest, as release and pass take
			// them; sometimes one in the middle.
			i := 0
			switch rng.IntN(3) {
			case 1:
				i = len(live[w]) - 1
			case 2:
				i = rng.IntN(len(live[w]))
			}
			h.remove(w, live[w][i])
			live[w] = slices.Delete(live[w], i, i+1)
		}
		for v := range h {
			want := uint64(0)
			if len(live[v]) > 0 {
				want = live[v][0]
			}
			if got := h.lowest(v); got != want {
				t.Fatalf("step %d: worker %d lowest %d, want %d", step, v, got, want)
			}
			if q := &h[v]; len(q.t) > 2*q.live+65 {
				t.Fatalf("step %d: worker %d keeps %d tickets for %d held", step, v, len(q.t), q.live)
			}
		}
	}
	// A ticket out of order (cannot happen, handled anyway).
	h = make(heldTickets, 1)
	h.add(0, 10)
	h.add(0, 5)
	if got := h.lowest(0); got != 5 {
		t.Fatalf("lowest %d, want 5", got)
	}
	h.remove(0, 5)
	if got := h.lowest(0); got != 10 {
		t.Fatalf("lowest %d, want 10", got)
	}
}
