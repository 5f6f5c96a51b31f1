package firehose

import "github.com/atrelay/relay/engine/atproto/event"

// This file holds the only frames the hub makes itself: the relay-generated
// control frames (error and #info), encoded once by the event codec.
//
// Canonical DAG-CBOR (spec §3.2): shortest-form lengths, map keys sorted
// shorter first, then bytewise. So the error header is {op:-1} =
// a1 62 6f 70 20, the error body is {error, message}, the #info header is
// {t:"#info", op:1} (t before op) and the #info body is {name, message}.

// Names of the error and info frames the relay generates (spec §10, §10.5).
const (
	errNameFutureCursor    = "FutureCursor"
	errNameConsumerTooSlow = "ConsumerTooSlow"
	infoNameOutdatedCursor = "OutdatedCursor"
)

// appendErrorFrame appends an error frame (header {op:-1}, body
// {error, message?}); message is omitted when empty.
func appendErrorFrame(dst []byte, name, message string) []byte {
	return event.AppendError(dst, &event.ErrorFrame{Error: []byte(name), Message: optional(message)})
}

// appendInfoFrame appends an #info frame (header {t:"#info", op:1}, body
// {name, message?}); message is omitted when empty.
func appendInfoFrame(dst []byte, name, message string) []byte {
	return event.AppendInfo(dst, &event.Info{Name: []byte(name), Message: optional(message)})
}

// optional is s as an optional field: nil (absent) when empty.
func optional(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// controlFrames are the pre-encoded frames a hub sends; static after NewHub.
type controlFrames struct {
	futureCursor    []byte
	consumerTooSlow []byte
	outdatedCursor  []byte
}

func newControlFrames() controlFrames {
	return controlFrames{
		futureCursor:    appendErrorFrame(nil, errNameFutureCursor, "cursor is beyond the newest event"),
		consumerTooSlow: appendErrorFrame(nil, errNameConsumerTooSlow, "consumer fell out of the replay window"),
		outdatedCursor: appendInfoFrame(nil, infoNameOutdatedCursor,
			"requested cursor is older than the replay window; starting from the oldest event"),
	}
}
