package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Consumer failures that end a connection.
var (
	// ErrConsumerFrameTooLarge: a message exceeds MaxConsumerFrame.
	ErrConsumerFrameTooLarge = errors.New("harness: relay sent a message above MaxConsumerFrame")
	// ErrConsumerProtocol: the relay broke the WebSocket protocol (bad
	// control frame, continuation without a start).
	ErrConsumerProtocol = errors.New("harness: WebSocket protocol error from relay")
	// ErrConsumerClosed: the relay closed the stream before the run ended.
	ErrConsumerClosed = errors.New("harness: relay closed the stream early")
)

// MaxConsumerFrame bounds one firehose message: a #commit carries at most
// 2,000,000 bytes of blocks (spec §10.1) plus a few KB of fields, and the
// reference read limit is 5,000,000 bytes (§9.2).
const MaxConsumerFrame = 8 << 20

// consumer is one subscribeRepos connection to the relay that counts what
// it receives and checks the stream's order.
//
// Fields are static, atomic (the sampler reads them while the read
// goroutine writes), or owned by the read goroutine and read by Run only
// after done is closed, as the blocks below say.
type consumer struct {
	// Static after dialConsumer.
	id       int
	sched    *schedule
	epoch    time.Time     // the run's clock origin
	gate     *atomic.Int64 // release offset from epoch in ns; set once before frames flow
	expected int64
	stopping *atomic.Bool // set by Run before it closes connections
	conn     net.Conn
	br       *bufio.Reader

	// Atomic: written by the read goroutine, read by the sampler.
	frames, bytes, events, lastSeq atomic.Int64

	// Owned by the read goroutine.
	scratch   [ws.MaxHeaderSize - 2]byte
	ctrl      [125]byte
	buf       []byte    // message being read; reused
	fragOp    ws.OpCode // opcode of the fragmented message being read
	fi        frameInfo
	hash      maphash.Hash
	dids      map[string]*didState // nil: this consumer does not check revs (Config.RevCheckConsumers)
	hist      histogram
	histKnown histogram // commits not in schedule.cold
	unmatched int64     // commits with no scheduled send time
	gaps      int64     // times seq jumped by more than one
	missing   int64     // seqs skipped over by those jumps
	backward  int64     // times seq did not rise (duplicates, reordering)
	revBad    int64     // commits whose rev did not rise above the DID's previous one
	noSeq     int64     // frames without a seq (#info)
	badFrames int64     // undecodable messages
	firstBad  error
	errFrames []string // error names of op -1 frames
	firstSeq  int64
	endErr    error // why the connection ended, when not stopped by Run

	// Synchronisation with Run.
	readyOnce sync.Once
	ready     chan struct{} // closed once expected events arrived
	done      chan struct{} // closed when the read goroutine exits
}

// didState is one DID's last seen rev, owned by its consumer.
type didState struct {
	rev []byte
}

// dialConsumer connects consumer id to a subscribeRepos URL.
func dialConsumer(ctx context.Context, id int, url string, sched *schedule, epoch time.Time, gate *atomic.Int64, stopping *atomic.Bool, expected int64, checkRevs bool) (*consumer, error) {
	conn, br, _, err := ws.Dialer{}.Dial(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("consumer %d: dial %s: %w", id, url, err)
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, 64<<10)
	}
	c := &consumer{
		id: id, sched: sched, epoch: epoch, gate: gate, expected: expected, stopping: stopping,
		conn: conn, br: br,
		ready: make(chan struct{}),
		done:  make(chan struct{}),
		buf:   make([]byte, 0, 64<<10),
	}
	if checkRevs {
		c.dids = map[string]*didState{}
	}
	c.hash.SetSeed(sched.seed)
	return c, nil
}

// run reads until the connection ends.
func (c *consumer) run() {
	defer close(c.done)
	err := c.readLoop()
	if !c.stopping.Load() {
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			err = ErrConsumerClosed
		}
		c.endErr = err
	}
	c.markReady()
}

func (c *consumer) markReady() { c.readyOnce.Do(func() { close(c.ready) }) }

// readLoop reads WebSocket messages (RFC 6455 §5) and hands each complete
// binary message to handle. It returns nil on a close frame.
func (c *consumer) readLoop() error {
	fragmented := false
	for {
		h, err := ws.ReadHeaderBuffer(c.br, c.scratch[:])
		if err != nil {
			return err
		}
		if h.OpCode.IsControl() {
			if h.Length > int64(len(c.ctrl)) || !h.Fin {
				return ErrConsumerProtocol
			}
			p := c.ctrl[:h.Length]
			if _, err := io.ReadFull(c.br, p); err != nil {
				return err
			}
			if h.Masked {
				ws.Cipher(p, h.Mask, 0)
			}
			switch h.OpCode {
			case ws.OpPing:
				if err := c.writeControl(ws.OpPong, p); err != nil {
					return err
				}
			case ws.OpClose:
				c.writeControl(ws.OpClose, nil)
				return nil
			}
			continue
		}
		switch {
		case h.OpCode == ws.OpContinuation && !fragmented:
			return ErrConsumerProtocol
		case h.OpCode != ws.OpContinuation:
			if fragmented {
				return ErrConsumerProtocol
			}
			c.buf = c.buf[:0]
		}
		if h.Length > int64(MaxConsumerFrame-len(c.buf)) {
			return ErrConsumerFrameTooLarge
		}
		n := len(c.buf)
		c.buf = grow(c.buf, int(h.Length))
		if _, err := io.ReadFull(c.br, c.buf[n:]); err != nil {
			return err
		}
		if h.Masked {
			ws.Cipher(c.buf[n:], h.Mask, 0)
		}
		fragmented = !h.Fin
		if fragmented {
			if h.OpCode != ws.OpContinuation {
				c.fragOp = h.OpCode
			}
			continue
		}
		op := h.OpCode
		if op == ws.OpContinuation {
			op = c.fragOp
		}
		if op != ws.OpBinary {
			// Text messages are a protocol error (§9.2); count, keep reading.
			c.frames.Add(1)
			c.noteBad(ErrConsumerProtocol)
			continue
		}
		c.handle(c.buf)
	}
}

// grow extends b by n bytes, reallocating only when its capacity is short.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), max(2*cap(b), len(b)+n))
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// writeControl sends a masked control frame (clients mask, §5.3). Only the
// read goroutine writes, so no lock is needed.
func (c *consumer) writeControl(op ws.OpCode, payload []byte) error {
	f := ws.NewFrame(op, true, payload)
	f = ws.MaskFrameInPlace(f)
	return ws.WriteFrame(c.conn, f)
}

func (c *consumer) noteBad(err error) {
	c.badFrames++
	if c.firstBad == nil {
		c.firstBad = err
	}
}

// handle counts and checks one binary message.
func (c *consumer) handle(msg []byte) {
	now := time.Since(c.epoch)
	c.frames.Add(1)
	c.bytes.Add(int64(len(msg)))
	fi := &c.fi
	if err := scanFrame(msg, fi); err != nil {
		c.noteBad(err)
		return
	}
	if fi.op == -1 {
		c.errFrames = append(c.errFrames, string(fi.errStr))
		return
	}
	if !fi.hasSeq {
		c.noSeq++
		return
	}
	if fi.seq <= 0 {
		c.noteBad(ErrFrameSeq)
		return
	}
	last := c.lastSeq.Load()
	switch {
	case c.firstSeq == 0:
		c.firstSeq = fi.seq
	case fi.seq <= last:
		c.backward++
	case fi.seq != last+1:
		c.gaps++
		c.missing += fi.seq - last - 1
	}
	if fi.seq > last {
		c.lastSeq.Store(fi.seq)
	}
	commit := fi.isCommit()
	if c.dids != nil && len(fi.did) > 0 && len(fi.rev) > 0 {
		st := c.dids[string(fi.did)]
		if st == nil {
			st = &didState{}
			c.dids[string(fi.did)] = st
		}
		// Commits must move the rev forward; a #sync may reset the chain
		// (spec §10.2), so it only sets the baseline.
		if commit && len(st.rev) > 0 && bytes.Compare(fi.rev, st.rev) <= 0 {
			c.revBad++
		}
		st.rev = append(st.rev[:0], fi.rev...)
	}
	if commit {
		key := commitKey(&c.hash, fi.did, fi.rev)
		if off, ok := c.sched.sendAt[key]; ok {
			if off >= c.sched.warmup {
				d := now - time.Duration(c.gate.Load()) - off
				c.hist.record(d)
				if _, cold := c.sched.cold[key]; !cold {
					c.histKnown.record(d)
				}
			}
		} else {
			c.unmatched++
		}
	}
	if c.events.Add(1) == c.expected {
		c.markReady()
	}
}
