package jetstream

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"

	"github.com/gobwas/ws"

	"github.com/atrelay/relay/engine/fanout"
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
	cr := clientReader{sub: sub, limit: sub.s.cfg.MaxClientMessageBytes}
	err := sub.out.ReadClient(r, cr.data)
	switch {
	case errors.Is(err, fanout.ErrProtocol):
		sub.out.Stop(causeProtocol, "")
	case cr.why != causeNone:
		sub.out.Stop(cr.why, cr.whyText)
	default:
		sub.out.Stop(causeClientClosed, "")
	}
}

// errRefused ends ReadClient when the client's message is refused; the
// clientReader holds why.
var errRefused = errors.New("jetstream: client message refused")

// clientReader takes the client's data frames from fanout's reader. Text
// messages are assembled (fragments included) up to limit bytes and
// parsed; binary messages are skipped without buffering, as Jetstream
// ignores them. Owned by the reader goroutine.
type clientReader struct {
	sub     *subscriber
	limit   int    // Config.MaxClientMessageBytes
	msg     []byte // the text message being assembled
	text    bool   // the message in progress is text (else binary)
	why     cause  // why a message was refused, with its close-frame text
	whyText string
}

// data consumes one data frame (fanout.Conn.ReadClient's data function).
func (cr *clientReader) data(h ws.Header, r *bufio.Reader) error {
	if h.OpCode != ws.OpContinuation {
		cr.text = h.OpCode == ws.OpText
		cr.msg = cr.msg[:0]
	}
	if !cr.text {
		return fanout.Discard(h, r)
	}
	if h.Length > int64(cr.limit-len(cr.msg)) {
		return cr.refuse(causeMessageSize, "message too big")
	}
	for off := int64(0); off < h.Length; {
		k := int(min(h.Length-off, readChunk))
		n := len(cr.msg)
		cr.msg = append(cr.msg, make([]byte, k)...)
		if _, err := io.ReadFull(r, cr.msg[n:]); err != nil {
			return fanout.ErrClientClosed
		}
		ws.Cipher(cr.msg[n:], h.Mask, int(off))
		off += int64(k)
	}
	if !h.Fin {
		return nil
	}
	if why, text := cr.sub.handleMessage(cr.msg); why != causeNone {
		return cr.refuse(why, text)
	}
	if cap(cr.msg) > keepMessageBuffer {
		cr.msg = nil
	}
	return nil
}

// refuse records why the client's message was refused and ends the read.
func (cr *clientReader) refuse(why cause, text string) error {
	cr.why, cr.whyText = why, text
	return errRefused
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
