package upstream

import "github.com/atrelay/relay/engine/atproto/event"

// isErrorFrame reports whether a message's CBOR header says op -1. This is
// the only CBOR the loop reads: an error frame ends the stream and counts as
// a failure (see reader.deliver), and the loop must see every frame the
// engine's dispatch scan (event.Peek) takes for one, or a host could dodge
// the backoff by encoding its header oddly. So it reads the header with
// that scan's own header step, event.PeekHeader. Bytes after the header are
// not looked at. It does not allocate.
func isErrorFrame(b []byte) bool {
	kind, _, err := event.PeekHeader(b)
	return err == nil && kind == event.KindError
}
