// Package label names the values of the relay's closed sets of reasons
// (why a consumer was disconnected, why a frame was dropped, why a request
// was refused) for metrics and logs, and registers one counter per value,
// each created at zero so that dashboards show 0 rather than "no data".
//
// A set is a small integer type whose values run from 0 up to a count
// constant. Its labels are one array literal sized by that constant and
// keyed by the values, written beside them, so the compiler sees a label
// for every value and no index beyond; this package only reads them.
package label

import "github.com/VictoriaMetrics/metrics"

// Unknown is the label of a value outside its set.
const Unknown = "unknown"

// Of returns v's label in names (index v is v's label), or Unknown for a
// value outside the set.
func Of[T ~uint8](names []string, v T) string {
	if int(v) < len(names) {
		return names[v]
	}
	return Unknown
}

// Counters registers the counter family{key="<label>"} on set for every
// value from first on and returns them indexed by value; the slots below
// first stay nil, for values that are never counted (such as "none").
func Counters[T ~uint8](set *metrics.Set, family, key string, names []string, first T) []*metrics.Counter {
	cs := make([]*metrics.Counter, len(names))
	for v := int(first); v < len(names); v++ {
		cs[v] = set.NewCounter(family + `{` + key + `="` + names[v] + `"}`)
	}
	return cs
}
