package jetstream

import (
	"bufio"
	"encoding/json"
	"io"

	"github.com/gobwas/ws"
)

// readChunk is how much of a client message is read at a time, so a
// message's buffer grows only as its bytes arrive.
const readChunk = 32 << 10

// keepMessageBuffer is the largest message buffer the reader keeps between
// messages; a larger one (a big options_update) is dropped after use.
const keepMessageBuffer = 64 << 10

// subscriberMessage is Jetstream's SubscriberSourcedMessage.
type subscriberMessage struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// optionsUpdate is Jetstream's SubscriberOptionsUpdatePayload: it replaces
// the collection and DID filters and the message size limit (cursor and
// compression are fixed for the life of the connection).
type optionsUpdate struct {
	WantedCollections   []string `json:"wantedCollections"`
	WantedDIDs          []string `json:"wantedDids"`
	MaxMessageSizeBytes int64    `json:"maxMessageSizeBytes"`
}

// readLoop is the subscriber's reader goroutine: it applies options_update
// messages, hands pings to the writer, and stops the subscriber when the
// client closes, hangs up or misbehaves.
func (sub *subscriber) readLoop(r *bufio.Reader) {
	defer sub.s.wg.Done()
	why, text := sub.readClient(r)
	sub.stopWith(why, text)
}

// queuePong records the latest ping payload for the writer and wakes it.
func (sub *subscriber) queuePong(payload []byte) {
	sub.dmu.Lock()
	sub.pingLen = copy(sub.pingPayload[:], payload)
	sub.dmu.Unlock()
	sub.pongWanted.Store(true)
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

// readClient reads client frames until the connection ends and returns
// why, with a close-frame text for refused options. Text messages are
// assembled (fragments included) up to MaxClientMessageBytes and parsed;
// binary messages are skipped without buffering, as Jetstream ignores
// them; control payloads (at most 125 bytes, enforced by ws.CheckHeader)
// are unmasked into a fixed array.
func (sub *subscriber) readClient(r *bufio.Reader) (cause, string) {
	var hdr [ws.MaxHeaderSize - 2]byte
	var ctl [125]byte
	var msg []byte
	limit := sub.s.cfg.MaxClientMessageBytes
	state := ws.StateServerSide
	text := false // the message in progress is text (else binary)
	for {
		h, err := ws.ReadHeaderBuffer(r, hdr[:])
		if err != nil {
			if err == ws.ErrHeaderLengthMSB || err == ws.ErrHeaderLengthUnexpected {
				return causeProtocol, ""
			}
			return causeClientClosed, ""
		}
		if err := ws.CheckHeader(h, state); err != nil {
			return causeProtocol, ""
		}
		if h.OpCode.IsControl() {
			p := ctl[:h.Length]
			if _, err := io.ReadFull(r, p); err != nil {
				return causeClientClosed, ""
			}
			ws.Cipher(p, h.Mask, 0)
			switch h.OpCode {
			case ws.OpClose:
				return causeClientClosed, ""
			case ws.OpPing:
				sub.queuePong(p)
			}
			continue
		}
		if h.OpCode != ws.OpContinuation {
			text = h.OpCode == ws.OpText
			msg = msg[:0]
		}
		// Track fragmentation so CheckHeader rejects stray continuations.
		if h.Fin {
			state = state.Clear(ws.StateFragmented)
		} else {
			state = state.Set(ws.StateFragmented)
		}
		if !text {
			if why := discard(r, h.Length); why != causeNone {
				return why, ""
			}
			continue
		}
		if h.Length > int64(limit-len(msg)) {
			return causeMessageSize, "message too big"
		}
		for off := int64(0); off < h.Length; {
			k := int(min(h.Length-off, readChunk))
			n := len(msg)
			msg = append(msg, make([]byte, k)...)
			if _, err := io.ReadFull(r, msg[n:]); err != nil {
				return causeClientClosed, ""
			}
			ws.Cipher(msg[n:], h.Mask, int(off))
			off += int64(k)
		}
		if !h.Fin {
			continue
		}
		if why, text := sub.handleMessage(msg); why != causeNone {
			return why, text
		}
		if cap(msg) > keepMessageBuffer {
			msg = nil
		}
	}
}

// discard skips n payload bytes.
func discard(r *bufio.Reader, n int64) cause {
	for n > 0 {
		k := int(min(n, 1<<30))
		d, err := r.Discard(k)
		n -= int64(d)
		if err != nil {
			return causeClientClosed
		}
	}
	return causeNone
}

// handleMessage applies one text message from the client. As in
// Jetstream, a message that is not JSON, or an options_update whose options
// are refused, ends the connection; other message types are ignored.
func (sub *subscriber) handleMessage(b []byte) (cause, string) {
	var m subscriberMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return causeBadOptions, "malformed subscriber message"
	}
	if m.Type != "options_update" {
		return causeNone, ""
	}
	var u optionsUpdate
	if err := json.Unmarshal(m.Payload, &u); err != nil {
		return causeBadOptions, "malformed options_update payload"
	}
	f, err := newFilter(u.WantedCollections, u.WantedDIDs, int(min(max(u.MaxMessageSizeBytes, 0), 1<<32-1)))
	if err != nil {
		return causeBadOptions, err.Error()
	}
	sub.filter.Store(f)
	sub.s.m.optionsUpds.Inc()
	select {
	case <-sub.hello:
	default:
		close(sub.hello)
	}
	return causeNone, ""
}
