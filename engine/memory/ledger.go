package memory

import (
	"fmt"
	"strings"
)

// Ledger is everything the budget has to hold, item by item: the bounds a
// relay's components were configured with, plus the process overhead, the
// fixed Go memory and the GC headroom they imply. It is how a test (and an
// operator reading the start-up log) checks that no component allocates
// outside the budget: an unbounded component, a bound raised past its
// share, or a new component left out of the shares all show up as a ledger
// over budget, or as a missing item. A plain value.
type Ledger struct {
	Budget int64
	Items  []Item
}

// Item is one line of a Ledger.
type Item struct {
	Name  string
	Bytes int64
	// Heap marks memory on the Go heap, which needs GC headroom.
	Heap bool
}

// NewLedger starts a ledger for budget with the items no component
// configures: ProcessOverhead and FixedGoBytes.
func NewLedger(budget int64) *Ledger {
	return &Ledger{Budget: budget, Items: []Item{
		{Name: "process overhead", Bytes: ProcessOverhead(budget)},
		{Name: "fixed Go memory", Bytes: FixedGoBytes, Heap: true},
	}}
}

// Add records one bound; heap says whether it is on the Go heap.
func (l *Ledger) Add(name string, bytes int64, heap bool) {
	l.Items = append(l.Items, Item{Name: name, Bytes: bytes, Heap: heap})
}

// GCHeadroom is the headroom the heap items need: a third of them, so the
// live heap is at most three quarters of what the Go runtime gets.
func (l *Ledger) GCHeadroom() int64 {
	var heap int64
	for _, it := range l.Items {
		if it.Heap {
			heap += it.Bytes
		}
	}
	return heap / 3
}

// Total is every item plus the GC headroom.
func (l *Ledger) Total() int64 {
	t := l.GCHeadroom()
	for _, it := range l.Items {
		t += it.Bytes
	}
	return t
}

// Check returns an error naming every item when the total exceeds the
// budget.
func (l *Ledger) Check() error {
	if t := l.Total(); t > l.Budget {
		return fmt.Errorf("memory: the configured bounds need %d bytes, more than the %d-byte budget: %s",
			t, l.Budget, l)
	}
	return nil
}

// String lists the items in MiB.
func (l *Ledger) String() string {
	var b strings.Builder
	for _, it := range l.Items {
		fmt.Fprintf(&b, "%s %.1f, ", it.Name, float64(it.Bytes)/(1<<20))
	}
	fmt.Fprintf(&b, "GC headroom %.1f; total %.1f of %.1f MiB",
		float64(l.GCHeadroom())/(1<<20), float64(l.Total())/(1<<20), float64(l.Budget)/(1<<20))
	return b.String()
}

// LedgerOf is the ledger of the shares of budget themselves, each item at
// its share: what SharesOf promises before any component applies it.
func LedgerOf(budget int64) *Ledger {
	s := SharesOf(budget)
	l := NewLedger(budget)
	l.Add("pebble block cache", s.BlockCache, false)
	l.Add("pebble memtables", s.MemTable*MemTablesInMemory, false)
	for _, x := range []struct {
		name string
		v    int64
	}{
		{"firehose ring", s.Ring}, {"identity cache", s.IdentityCache}, {"subscribed hosts", s.Hosts},
		{"account overlay", s.Overlay}, {"upstream buffers", s.Upstream},
		{"intake", s.Intake}, {"held results past their bound", s.Intake}, {"results", s.Results}, {"resync", s.Resync},
		{"firehose consumers", s.Consumers}, {"http connections", s.HTTP}, {"jetstream subscribers", s.Jetstream},
	} {
		l.Add(x.name, x.v, true)
	}
	return l
}
