package fleet

// entryFlags mark history entries that are not plain events.
type entryFlags uint8

const (
	// flagLiveOnly: a fault frame (malformed, truncated, oversize, seq
	// reset). It goes only to connections that were open when it was
	// added; cursor replay skips it, so a relay that drops the connection
	// and reconnects with its cursor does not meet it again.
	flagLiveOnly entryFlags = 1 << iota
	// flagSlow: the frame is written in small chunks with pauses.
	flagSlow
	// flagDisconnect: not a frame; connections open when it was added
	// close their TCP socket abruptly on reaching it.
	flagDisconnect
)

// entry is one item of a host's event history. frame is immutable once
// added, so streams may write it without holding the host lock.
type entry struct {
	seq   int64 // the event's seq; for live-only entries the seq they follow
	flags entryFlags
	frame []byte
}

// history is a host's bounded event log, addressed by absolute positions
// (0 = the first entry ever added). Guarded by Host.mu.
type history struct {
	entries []entry
	first   int64 // absolute position of entries[0]
	max     int   // bound on len(entries); the oldest are evicted
}

// end is the position the next entry will get.
func (h *history) end() int64 { return h.first + int64(len(h.entries)) }

// add appends e, evicting the oldest entry beyond the bound.
func (h *history) add(e entry) {
	if len(h.entries) >= h.max {
		drop := len(h.entries) - h.max + 1
		clear(h.entries[:drop])
		h.entries = h.entries[drop:]
		h.first += int64(drop)
	}
	h.entries = append(h.entries, e)
}

// at returns the entry at absolute position pos, which must be in range.
func (h *history) at(pos int64) *entry { return &h.entries[pos-h.first] }

// oldestSeq is the seq of the oldest retained event, or 0 when none.
func (h *history) oldestSeq() int64 {
	for i := range h.entries {
		if h.entries[i].flags&(flagLiveOnly|flagDisconnect) == 0 {
			return h.entries[i].seq
		}
	}
	return 0
}

// after returns the position of the first retained event with seq >
// cursor (spec §9.3: both reference implementations send strictly
// greater), and whether the cursor is older than the window.
func (h *history) after(cursor int64) (pos int64, outdated bool) {
	oldest := h.oldestSeq()
	if oldest == 0 || cursor < oldest-1 {
		return h.first, oldest != 0 && cursor != 0
	}
	// Entries are in seq order (live-only entries carry the seq they
	// follow), so binary search the first seq > cursor.
	lo, hi := 0, len(h.entries)
	for lo < hi {
		m := (lo + hi) / 2
		if h.entries[m].seq <= cursor {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return h.first + int64(lo), false
}
