package upstream

// smallReadBytes is how much a reader reads into its scratch buffer at a
// time while the loop's pending bytes are at Config.MaxPendingBytes, instead
// of the whole scratch buffer. A read is parsed before the next one, so a
// host the Sink pauses (or the budget starves) then keeps at most this much
// read past its last frame: its pending buffer is at most this size's pool
// class (4 KiB), whatever it sent. Small enough that thousands of paused
// hosts cost little (HostBytesTLS counts it per host), large enough for a
// p99 frame (4 KiB) in one read; the extra read(2) calls are paid only
// while that many bytes are pending, that is while the Sink pauses hosts.
const smallReadBytes = 4 << 10

// readBuf is the part of the reader's scratch buffer the next read may
// fill: all of it while the loop's pending bytes are under the bound, so a
// busy host reads as much per syscall as ever, and smallReadBytes at or
// above it. The check is not atomic with keepPending: readers racing past
// the bound together can add one scratch-sized buffer each beyond it, which
// the bound in doc.go (Back-pressure) counts.
func (r *reader) readBuf() []byte {
	if r.l.pending.Load() >= r.l.cfg.MaxPendingBytes {
		return r.scratch[:min(smallReadBytes, len(r.scratch))]
	}
	return r.scratch
}

// keepPending copies p, bytes read but not parsed when a turn stopped
// (the Sink paused the host, the budget starved it, or the upgrade read
// frames behind the response), to c's pending buffer and counts its
// capacity in Loop.pending. c has no pending buffer. Called by the
// connection's owner.
func (l *Loop) keepPending(c *conn, p []byte) {
	c.pending = l.bufs.get(len(p))
	c.pending.B = append(c.pending.B, p...)
	c.pendOff = 0
	l.pending.Add(int64(cap(c.pending.B)))
}

// freePending returns c's pending buffer, if any, and uncounts it. Called
// by the connection's owner once the buffer is parsed or the connection is
// closed.
func (l *Loop) freePending(c *conn) {
	if c.pending == nil {
		return
	}
	l.pending.Add(-int64(cap(c.pending.B)))
	l.bufs.put(c.pending)
	c.pending, c.pendOff = nil, 0
}
