package replay

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atrelay/relay/bench/capture"
	"github.com/atrelay/relay/bench/testca"
)

// Pacing says how fast a Replayer releases frames once started.
type Pacing int

const (
	// AsFastAsPossible publishes every frame at Start; connections send
	// as fast as their clients read.
	AsFastAsPossible Pacing = iota
	// Scaled publishes each frame at its recorded receive-time offset
	// divided by Options.Speed (1 = real speed, 10 = ten times faster).
	Scaled
)

// Options configure a Replayer. The zero value replays as fast as
// possible, starting as soon as the hosts listen.
type Options struct {
	Pacing Pacing
	// Speed multiplies real speed under Scaled pacing; zero or less means 1.
	Speed float64
	// Gated holds every frame back until Start, so a harness can connect
	// the relay first and then release the traffic.
	Gated bool
	// BlockBytes is the raw size of a compressed frame block (default DefaultBlockBytes).
	BlockBytes int
	// ServiceDID is the did describeServer reports (default did:web:localhost).
	ServiceDID string
	// TLS, when set, makes every host serve https:// and wss:// with a
	// certificate from this CA under the name pds-N.localhost:PORT (N its
	// source index), which a relay's development switch dials on loopback
	// over TLS. Nil: ws:// as localhost:PORT.
	TLS *testca.CA
}

// ErrBadOptions: Options are inconsistent.
var ErrBadOptions = errors.New("replay: bad options")

// Host describes one replayed source host.
type Host struct {
	Source    int    // index in the capture header
	Original  string // the capture's hostname for it, e.g. localhost:5201
	Name      string // the name it announces: localhost:PORT, or pds-N.localhost:PORT with TLS
	TLS       bool   // serves https:// and wss://
	Addr      string // where it listens: 127.0.0.1:PORT
	Frames    int    // frames it serves
	LastSeq   int64  // seq of its last frame
	RawBytes  int64  // frame bytes it serves
	HeldBytes int64  // memory its compressed frame blocks take
}

// HostStats are one host's counters.
type HostStats struct {
	Name        string
	Published   int   // frames released so far
	FramesSent  int64 // frames written to connections, summed over connections
	BytesSent   int64 // frame bytes written (without WebSocket headers)
	Connections int64 // subscribeRepos connections accepted
	Open        int64 // subscribeRepos connections open now
}

// Replayer serves a capture as its original set of hosts, each on its own
// 127.0.0.1 port. It is safe for concurrent use.
//
// Memory: each host's frames are held zstd-compressed in blocks of about
// BlockBytes (about a quarter of the raw size for firehose traffic), plus
// 16 bytes per frame for its seq and receive time. Every connection
// decompresses one block at a time into its own buffer and writes frames
// from there, byte for byte; an idle connection is one parked goroutine
// and its buffers.
type Replayer struct {
	opts  Options // static
	hosts []*host // static after New
	skip  int64   // static: records load dropped

	startOnce sync.Once
	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	pacers    sync.WaitGroup // pacer goroutines
}

// New loads the capture and starts one listener per source host.
// Unless opts.Gated, frames are released immediately.
func New(c *capture.Capture, opts Options) (*Replayer, error) {
	if opts.Pacing != AsFastAsPossible && opts.Pacing != Scaled {
		return nil, fmt.Errorf("%w: pacing %d", ErrBadOptions, opts.Pacing)
	}
	if opts.Speed <= 0 {
		opts.Speed = 1
	}
	if opts.BlockBytes <= 0 {
		opts.BlockBytes = DefaultBlockBytes
	}
	if opts.ServiceDID == "" {
		opts.ServiceDID = "did:web:localhost"
	}
	fs, st, err := load(c, opts.BlockBytes)
	if err != nil {
		return nil, err
	}
	r := &Replayer{opts: opts, skip: st.skipped, closing: make(chan struct{})}
	for i, f := range fs {
		h, err := newHost(r, i, c.Header.Sources[i].Hostname, f)
		if err != nil {
			r.Close()
			return nil, err
		}
		r.hosts = append(r.hosts, h)
	}
	if !opts.Gated {
		r.Start()
	}
	return r, nil
}

// Hosts describes the replayed hosts, in capture source order.
func (r *Replayer) Hosts() []Host {
	out := make([]Host, len(r.hosts))
	for i, h := range r.hosts {
		out[i] = h.info
	}
	return out
}

// Skipped is the number of capture records not served: frames without a
// seq and frames whose seq did not rise above their host's previous one.
func (r *Replayer) Skipped() int64 { return r.skip }

// Start releases the frames (the gate of Options.Gated). Later calls do nothing.
func (r *Replayer) Start() {
	r.startOnce.Do(func() {
		if r.opts.Pacing == AsFastAsPossible {
			for _, h := range r.hosts {
				h.publish(h.f.len())
			}
			return
		}
		t0 := time.Now()
		base := int64(0)
		first := true
		for _, h := range r.hosts {
			if h.f.len() > 0 && (first || h.f.times[0] < base) {
				base, first = h.f.times[0], false
			}
		}
		for _, h := range r.hosts {
			if h.f.len() == 0 {
				continue
			}
			r.pacers.Add(1)
			go func() {
				defer r.pacers.Done()
				h.pace(t0, base, r.opts.Speed, r.closing)
			}()
		}
	})
}

// Stats returns every host's counters.
func (r *Replayer) Stats() []HostStats {
	out := make([]HostStats, len(r.hosts))
	for i, h := range r.hosts {
		out[i] = HostStats{
			Name:        h.info.Name,
			Published:   int(h.published.Load()),
			FramesSent:  h.framesSent.Load(),
			BytesSent:   h.bytesSent.Load(),
			Connections: h.conns.Load(),
			Open:        h.open.Load(),
		}
	}
	return out
}

// Close stops the listeners, closes every connection and waits for all
// goroutines the Replayer started.
func (r *Replayer) Close() error {
	r.closeOnce.Do(func() {
		close(r.closing)
		for _, h := range r.hosts {
			h.close()
		}
		r.pacers.Wait()
	})
	return nil
}

// host is one replayed source.
type host struct {
	// Static after newHost.
	r    *Replayer
	info Host
	f    *frames
	ln   net.Listener
	srv  *http.Server

	published atomic.Int64 // frames released so far; only grows

	mu       sync.Mutex // guards the fields below
	wake     chan struct{}
	live     map[net.Conn]struct{}
	closed   bool
	sessions sync.WaitGroup // connection goroutines; Add only under mu while !closed

	framesSent, bytesSent, conns, open atomic.Int64
}

func newHost(r *Replayer, i int, original string, f *frames) (*host, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	h := &host{
		r:    r,
		f:    f,
		ln:   ln,
		wake: make(chan struct{}),
		live: map[net.Conn]struct{}{},
		info: Host{
			Source:   i,
			Original: original,
			Name:     fmt.Sprintf("localhost:%d", port),
			Addr:     ln.Addr().String(),
			Frames:   f.len(),
			TLS:      r.opts.TLS != nil,
		},
	}
	if h.info.TLS {
		h.info.Name = fmt.Sprintf("pds-%d.localhost:%d", i, port)
	}
	if f.len() > 0 {
		h.info.LastSeq = f.seqs[f.len()-1]
	}
	h.info.RawBytes = f.bytes
	for _, b := range f.blocks {
		h.info.HeldBytes += int64(len(b.data))
	}
	h.srv = &http.Server{Handler: h.routes(), ReadHeaderTimeout: 10 * time.Second}
	if h.info.TLS {
		h.srv.TLSConfig = r.opts.TLS.ServerConfig()
		go h.srv.ServeTLS(ln, "", "")
	} else {
		go h.srv.Serve(ln)
	}
	return h, nil
}

// URL is the host's PDS endpoint as DID documents name it.
func (h Host) URL() string {
	if h.TLS {
		return "https://" + h.Name
	}
	return "http://" + h.Name
}

// publish releases frames [0, n) and wakes every waiting connection.
func (h *host) publish(n int) {
	h.published.Store(int64(n))
	h.mu.Lock()
	close(h.wake)
	h.wake = make(chan struct{})
	h.mu.Unlock()
}

// waitCh returns a channel closed at the next publish.
func (h *host) waitCh() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.wake
}

// pace publishes frames on their recorded schedule, scaled by speed.
func (h *host) pace(t0 time.Time, base int64, speed float64, closing <-chan struct{}) {
	due := func(i int) time.Time {
		return t0.Add(time.Duration(float64(h.f.times[i]-base) / speed))
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	n := h.f.len()
	for i := 0; i < n; {
		if d := time.Until(due(i)); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-closing:
				return
			}
		}
		now := time.Now()
		j := i + 1
		for j < n && !due(j).After(now) {
			j++
		}
		h.publish(j)
		i = j
	}
}

// track registers a hijacked connection; false once the host is closing.
func (h *host) track(c net.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.live[c] = struct{}{}
	h.sessions.Add(1)
	return true
}

func (h *host) untrack(c net.Conn) {
	h.mu.Lock()
	delete(h.live, c)
	h.mu.Unlock()
	h.sessions.Done()
}

func (h *host) close() {
	h.srv.Close()
	h.mu.Lock()
	h.closed = true
	for c := range h.live {
		c.Close()
	}
	h.mu.Unlock()
	h.sessions.Wait()
}
