package jetstream

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/atrelay/relay/engine/atproto/syntax"
)

// Filter limits, Jetstream's: a subscriber naming more is refused.
const (
	MaxWantedCollections = 100
	MaxWantedDIDs        = 10_000
)

// ErrOptions is returned (wrapped) for subscriber options Jetstream would
// refuse: a bad collection or DID, or too many of them.
var ErrOptions = errors.New("invalid subscriber options")

// filter is one subscriber's immutable choice of events. A subscriber swaps
// in a new filter on options_update; the pump reads whichever is current.
type filter struct {
	// allCollections is true when no collection was named.
	allCollections bool
	exact          map[string]struct{} // full NSIDs
	prefixes       []string            // "app.bsky.feed." for "app.bsky.feed.*"
	// dids is empty when no DID was named.
	dids map[string]struct{}
	// maxMessageBytes skips events whose message (compressed, when the
	// subscriber compresses) is larger; 0 means no limit.
	maxMessageBytes int
}

// allEvents is the filter of a subscriber that named nothing.
var allEvents = &filter{allCollections: true}

// newFilter validates wanted collections and DIDs as Jetstream does: a
// collection ending in ".*" is a prefix wildcard (everything up to and
// including the dot must match), any other must be a valid NSID; DIDs must
// be valid; at most MaxWantedCollections and MaxWantedDIDs distinct values.
func newFilter(collections, dids []string, maxMessageBytes int) (*filter, error) {
	f := &filter{allCollections: len(collections) == 0, maxMessageBytes: max(maxMessageBytes, 0)}
	for _, col := range collections {
		if p, ok := strings.CutSuffix(col, "*"); ok && strings.HasSuffix(p, ".") {
			if len(p) > syntax.MaxNSIDLen {
				return nil, fmt.Errorf("%w: collection prefix too long", ErrOptions)
			}
			if !containsString(f.prefixes, p) {
				f.prefixes = append(f.prefixes, p)
			}
			continue
		}
		if _, err := syntax.ParseNSID(col); err != nil {
			return nil, fmt.Errorf("%w: invalid collection: %+.100q", ErrOptions, col)
		}
		if f.exact == nil {
			f.exact = make(map[string]struct{})
		}
		f.exact[col] = struct{}{}
		if len(f.exact)+len(f.prefixes) > MaxWantedCollections {
			break
		}
	}
	if len(f.exact)+len(f.prefixes) > MaxWantedCollections {
		return nil, fmt.Errorf("%w: too many wanted collections (at most %d)", ErrOptions, MaxWantedCollections)
	}
	for _, d := range dids {
		if _, err := syntax.ParseDID(d); err != nil {
			return nil, fmt.Errorf("%w: invalid DID: %+.100q", ErrOptions, d)
		}
		if f.dids == nil {
			f.dids = make(map[string]struct{})
		}
		f.dids[d] = struct{}{}
		if len(f.dids) > MaxWantedDIDs {
			return nil, fmt.Errorf("%w: too many wanted DIDs (at most %d)", ErrOptions, MaxWantedDIDs)
		}
	}
	return f, nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// The filter passes an event of kind k about did in collection (empty for
// identity and account events) when it passes both halves, wantsDID and
// wantsCollection. As in Jetstream, identity and account events pass every
// collection filter; the DID filter applies to every kind.

// wantsDID is the DID half of the filter. The Jetstream events of one
// relay event share its DID, so callers decide it once per relay event.
func (f *filter) wantsDID(did []byte) bool {
	if len(f.dids) == 0 {
		return true
	}
	_, ok := f.dids[string(did)]
	return ok
}

// wantsCollection is the collection half of the filter.
func (f *filter) wantsCollection(k evKind, collection []byte) bool {
	if f.allCollections || k != kindCommit {
		return true
	}
	if _, ok := f.exact[string(collection)]; ok {
		return true
	}
	for _, p := range f.prefixes {
		if len(collection) >= len(p) && string(collection[:len(p)]) == p {
			return true
		}
	}
	return false
}

// parseMaxMessageBytes reads maxMessageSizeBytes as Jetstream does: empty,
// negative or unparsable means 0 (no limit); values beyond 32 bits are
// capped.
func parseMaxMessageBytes(s string) int {
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return int(min(n, 1<<32-1))
}
