package fleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atrelay/relay/engine/atproto/syntax"
)

// Errors returned by Host and Fleet methods.
var (
	// ErrClosed: the host or fleet was closed.
	ErrClosed = errors.New("fleet: closed")
	// ErrUnknownAccount: no account with that DID lives in the fleet.
	ErrUnknownAccount = errors.New("fleet: unknown account")
	// ErrNoAccount: the host has no account an action or fault needs.
	ErrNoAccount = errors.New("fleet: host has no suitable account")
	// ErrUnknownFault: a FaultKind outside the defined set.
	ErrUnknownFault = errors.New("fleet: unknown fault kind")
	// ErrCrawl: a relay answered requestCrawl with a non-200 status.
	ErrCrawl = errors.New("fleet: requestCrawl refused")
)

// HostStats are one host's counters.
type HostStats struct {
	Name        string
	Seq         int64 // last seq assigned
	Events      int64 // events published (faults included)
	Accounts    int   // accounts homed here now
	Connections int64 // subscribeRepos connections accepted
	Open        int64 // subscribeRepos connections open now
	FramesSent  int64 // frames written to connections
	TooSlow     int64 // connections closed with ConsumerTooSlow
}

// Host is one simulated PDS on its own 127.0.0.1 listener, named
// localhost:PORT, or pds-N.localhost:PORT when it serves TLS
// (Options.TLS). It is safe for concurrent use.
//
// Cost: an idle host is one listener socket and the one goroutine
// net/http.Server.Serve runs for it; a subscriber is its handler goroutine
// plus one goroutine reading control frames (pings, close). No timer or
// goroutine runs per idle subscriber beyond those.
type Host struct {
	// Static after construction.
	Name  string // localhost:PORT (pds-N.localhost:PORT with TLS), the name the host announces
	Addr  string // 127.0.0.1:PORT, where it listens
	Index int    // position in the fleet
	TLS   bool   // serves https:// and wss://
	fleet *Fleet
	ln    net.Listener
	srv   *http.Server

	clock *syntax.TIDClock // safe for concurrent use

	mu struct {
		sync.Mutex
		seq      int64
		hist     history
		wake     chan struct{} // closed and replaced on every add
		accounts []*Account    // homed here, in creation order
		byDID    map[string]*Account
		conns    map[net.Conn]struct{}
		closed   bool
	}

	faults      [numFaultKinds]atomic.Int64
	events      atomic.Int64
	connections atomic.Int64
	open        atomic.Int64
	framesSent  atomic.Int64
	tooSlow     atomic.Int64
}

func newHost(f *Fleet, index int) (*Host, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fleet: listen: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	h := &Host{
		Name:  fmt.Sprintf("localhost:%d", port),
		Addr:  ln.Addr().String(),
		Index: index,
		TLS:   f.opts.TLS != nil,
		fleet: f,
		ln:    ln,
		clock: syntax.NewTIDClock(uint(index), nil),
	}
	if h.TLS {
		h.Name = fmt.Sprintf("pds-%d.localhost:%d", index, port)
	}
	h.mu.seq = f.opts.FirstSeq - 1
	h.mu.hist.max = f.opts.HistoryEvents
	h.mu.wake = make(chan struct{})
	h.mu.byDID = map[string]*Account{}
	h.mu.conns = map[net.Conn]struct{}{}
	h.srv = &http.Server{Handler: h.routes(), ReadHeaderTimeout: 10 * time.Second}
	if h.TLS {
		h.srv.TLSConfig = f.opts.TLS.ServerConfig()
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if h.TLS {
			// HTTP/2 is offered for XRPC calls; the upgrade of
			// subscribeRepos is HTTP/1.1, which WebSocket clients ask for.
			h.srv.ServeTLS(ln, "", "")
			return
		}
		h.srv.Serve(ln)
	}()
	return h, nil
}

// URL is the host's PDS endpoint as DID documents carry it.
func (h *Host) URL() string {
	if h.TLS {
		return "https://" + h.Name
	}
	return "http://" + h.Name
}

// close stops the listener and every connection.
func (h *Host) close() {
	h.mu.Lock()
	if h.mu.closed {
		h.mu.Unlock()
		return
	}
	h.mu.closed = true
	close(h.mu.wake)
	h.mu.wake = nil
	for c := range h.mu.conns {
		c.Close()
	}
	h.mu.Unlock()
	h.srv.Close()
}

// publish adds one event: build appends the frame for the given seq.
// REQUIRES: the caller holds the lock of the account the event is about (if
// any), so an account's events keep their order.
func (h *Host) publish(flags entryFlags, build func(dst []byte, seq int64) []byte) (int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.closed {
		return 0, ErrClosed
	}
	h.mu.seq++
	h.mu.hist.add(entry{seq: h.mu.seq, flags: flags, frame: build(nil, h.mu.seq)})
	h.wakeLocked()
	h.events.Add(1)
	return h.mu.seq, nil
}

// addLive adds a live-only entry (a fault frame or a disconnect marker)
// without consuming a seq.
func (h *Host) addLive(flags entryFlags, frame []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.closed {
		return ErrClosed
	}
	h.mu.hist.add(entry{seq: h.mu.seq, flags: flags | flagLiveOnly, frame: frame})
	h.wakeLocked()
	return nil
}

// wakeLocked wakes every stream waiting for entries. REQUIRES: h.mu held.
func (h *Host) wakeLocked() {
	close(h.mu.wake)
	h.mu.wake = make(chan struct{})
}

// Seq returns the last seq the host assigned.
func (h *Host) Seq() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mu.seq
}

// Accounts returns the DIDs homed on the host now, in creation order.
func (h *Host) Accounts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, len(h.mu.accounts))
	for i, a := range h.mu.accounts {
		out[i] = a.DID
	}
	return out
}

// Stats returns the host's counters.
func (h *Host) Stats() HostStats {
	h.mu.Lock()
	seq, n := h.mu.seq, len(h.mu.accounts)
	h.mu.Unlock()
	return HostStats{
		Name: h.Name, Seq: seq, Events: h.events.Load(), Accounts: n,
		Connections: h.connections.Load(), Open: h.open.Load(),
		FramesSent: h.framesSent.Load(), TooSlow: h.tooSlow.Load(),
	}
}

// account returns the account homed here under did, or nil.
func (h *Host) account(did string) *Account {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mu.byDID[did]
}

// accountAt maps a Zipf rank onto the host's current accounts.
func (h *Host) accountAt(rank int) *Account {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.mu.accounts) == 0 {
		return nil
	}
	return h.mu.accounts[rank%len(h.mu.accounts)]
}

// attach makes a the host's account; detach removes it.
func (h *Host) attach(a *Account) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.mu.byDID[a.DID]; ok {
		return
	}
	h.mu.byDID[a.DID] = a
	h.mu.accounts = append(h.mu.accounts, a)
}

func (h *Host) detach(a *Account) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.mu.byDID, a.DID)
	for i, x := range h.mu.accounts {
		if x == a {
			h.mu.accounts = append(h.mu.accounts[:i], h.mu.accounts[i+1:]...)
			break
		}
	}
}

// RequestCrawl asks the relay at relayURL (e.g. http://127.0.0.1:2470) to
// crawl this host: POST /xrpc/com.atproto.sync.requestCrawl with
// {"hostname": h.Name} (spec §14.3).
func (h *Host) RequestCrawl(ctx context.Context, relayURL string) error {
	return requestCrawl(ctx, h.fleet.client, relayURL, h.Name)
}
