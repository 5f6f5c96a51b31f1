package firehose

import (
	"bufio"
	"errors"

	"github.com/atrelay/relay/engine/fanout"
)

// readLoop is the consumer's reader goroutine: the stream is server→client
// only (spec §9.1), so client data frames are discarded unread, a ping is
// handed to the writer to answer, and a close frame, a protocol error or a
// read error (the client hung up, or finish closed the socket) stops the
// consumer.
func (c *consumer) readLoop(r *bufio.Reader) {
	defer c.h.wg.Done()
	why := causeClientClosed
	if err := c.out.ReadClient(r, fanout.Discard); errors.Is(err, fanout.ErrProtocol) {
		why = causeProtocol
	}
	c.stop(why)
}
