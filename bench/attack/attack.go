// Package attack runs hostile remote parties against a relay on loopback,
// all at once, for the reliability bench (`relay bench --attack`, `make
// bench-attack`): PDS hosts that abuse the WebSocket handshake, frame
// lengths, control frames and error frames, did:web documents that never
// answer, a requestCrawl flood and floods of idle firehose consumers and
// Jetstream subscribers.
//
// Every attacker is bounded in time and bytes (Stop ends all of them; each
// connection sends at most MaxBytesPerConn) and talks only to the relay
// under test on 127.0.0.1, which must run with its development switch on
// (hosts named localhost:PORT over ws://) so it agrees to dial them.
//
// The relay is expected to survive all of it inside its memory budget and
// keep serving its normal hosts; Stats says how hard each attacker tried
// (connections the relay made to it, bytes sent) and how the relay answered
// the public endpoints.
package attack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/gobwas/ws"
)

// Kind is one misbehaving PDS host. The doc of each constant says what the
// host does once the relay subscribes, and what a hardened relay does.
type Kind uint8

const (
	// EndlessHeader answers the upgrade with one header line that never
	// ends. Relay: fail the handshake at its header bound, back off.
	EndlessHeader Kind = iota
	// Trickle completes the handshake, declares a 4,990,000-byte binary
	// frame and sends one byte of it every 150 ms. Relay: hold no more than
	// the bytes that arrived, drop the connection at its message timeout.
	Trickle
	// PingFlood completes the handshake and sends pings as fast as the
	// socket takes them, never reading. Relay: never block a reader on a
	// pong, drop the connection for the ping rate.
	PingFlood
	// FutureCursor answers every subscription with a FutureCursor error
	// frame and closes. Relay: back off like a dial failure.
	FutureCursor
	// InfoFlood sends #info frames with 64 KiB names, 20 a second. Relay:
	// truncated, rate-limited log lines.
	InfoFlood
	// DIDWebFlood sends #identity events for did:web accounts whose
	// documents are served by listeners that accept and never answer.
	// Relay: resolve them in the did:web pool, with its short timeout,
	// without delaying did:plc resolutions or other accounts.
	DIDWebFlood
	numKinds
)

var kindNames = [numKinds]string{"endless-header", "trickle", "ping-flood", "future-cursor", "info-flood", "didweb-flood"}

// String names the kind.
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Options configures Start. Zero fields take the defaults listed.
type Options struct {
	// RelayAPI is the relay's public base URL, e.g. http://127.0.0.1:2470.
	RelayAPI string
	// HostsPerKind is how many hosts of each Kind are started (default 2).
	HostsPerKind int
	// BlackholeListeners serve the did:web documents of DIDWebFlood (default 32).
	BlackholeListeners int
	// Consumers is how many idle subscribeRepos connections the consumer
	// flood tries to open (default 2,000), never reading from them; as
	// many Jetstream subscriptions (GET /subscribe) are tried too.
	Consumers int
	// CrawlPerSecond is the rate of requestCrawl calls for hosts that do
	// not answer (default 50).
	CrawlPerSecond int
	// MaxBytesPerConn bounds what an attacker sends on one connection
	// (default 256 MiB).
	MaxBytesPerConn int64
}

func (o Options) withDefaults() Options {
	if o.HostsPerKind <= 0 {
		o.HostsPerKind = 2
	}
	if o.BlackholeListeners <= 0 {
		o.BlackholeListeners = 32
	}
	if o.Consumers <= 0 {
		o.Consumers = 2000
	}
	if o.CrawlPerSecond <= 0 {
		o.CrawlPerSecond = 50
	}
	if o.MaxBytesPerConn <= 0 {
		o.MaxBytesPerConn = 256 << 20
	}
	return o
}

// Stats is what the attackers did and how the relay answered; a plain value.
type Stats struct {
	// Hosts, per kind: the relay's connections to those hosts and the
	// bytes the hosts sent it.
	Hosts map[string]HostStats `json:"hosts"`
	// BlackholeConns is how many connections the relay opened to the
	// never-answering did:web servers.
	BlackholeConns int64 `json:"blackholeConns"`
	// Crawl counts the flood's requestCrawl answers by HTTP status
	// ("error" for transport failures).
	Crawl map[string]int64 `json:"crawl"`
	// ConsumersAdmitted and ConsumersRefused split the consumer flood;
	// Refused is keyed by HTTP status. Subscribers* split the Jetstream
	// subscriber flood alike.
	ConsumersAdmitted   int64            `json:"consumersAdmitted"`
	ConsumersRefused    map[string]int64 `json:"consumersRefused"`
	SubscribersAdmitted int64            `json:"subscribersAdmitted"`
	SubscribersRefused  map[string]int64 `json:"subscribersRefused"`
}

// HostStats is one kind's figures.
type HostStats struct {
	Conns int64 `json:"conns"`
	Bytes int64 `json:"bytes"`
}

// Set is a running attack; Stop ends it.
type Set struct {
	opts   Options
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closers   []io.Closer // listeners and open connections, closed by Stop
	crawl     map[string]int64
	consumers flood // subscribeRepos
	subs      flood // Jetstream
	blackhole atomic.Int64
	hosts     []*host
	didPorts  []int
}

type host struct {
	kind  Kind
	ln    net.Listener
	name  string // localhost:PORT
	conns atomic.Int64
	bytes atomic.Int64
}

// Start starts every attacker: the hosts listen and are announced to the
// relay with requestCrawl (as an anonymous caller would), then the
// requestCrawl and consumer floods begin. It fails if a listener cannot be
// opened; a relay refusing an attack host's requestCrawl is counted, not
// an error (a hardened relay may refuse).
func Start(ctx context.Context, opts Options) (*Set, error) {
	opts = opts.withDefaults()
	if opts.RelayAPI == "" {
		return nil, errors.New("attack: RelayAPI is required")
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Set{opts: opts, ctx: ctx, cancel: cancel, crawl: map[string]int64{},
		consumers: flood{refused: map[string]int64{}}, subs: flood{refused: map[string]int64{}}}
	for range opts.BlackholeListeners {
		ln, port, err := s.listen()
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.didPorts = append(s.didPorts, port)
		s.wg.Add(1)
		go s.blackholeLoop(ln)
	}
	for k := Kind(0); k < numKinds; k++ {
		for range opts.HostsPerKind {
			ln, port, err := s.listen()
			if err != nil {
				s.Stop()
				return nil, err
			}
			h := &host{kind: k, ln: ln, name: fmt.Sprintf("localhost:%d", port)}
			s.hosts = append(s.hosts, h)
			s.wg.Add(1)
			go s.acceptLoop(h)
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, h := range s.hosts {
		s.count(s.crawl, requestCrawl(ctx, client, opts.RelayAPI, h.name))
	}
	s.wg.Add(3)
	go s.crawlFlood(client)
	go s.connFlood(&s.consumers, "/xrpc/com.atproto.sync.subscribeRepos")
	go s.connFlood(&s.subs, "/subscribe")
	return s, nil
}

// Stop ends every attacker and waits for them; it returns the figures.
func (s *Set) Stop() Stats {
	s.cancel()
	s.mu.Lock()
	for _, c := range s.closers {
		_ = c.Close()
	}
	s.closers = nil
	s.mu.Unlock()
	s.wg.Wait()
	st := Stats{Hosts: map[string]HostStats{}, BlackholeConns: s.blackhole.Load(),
		ConsumersAdmitted: s.consumers.admitted.Load(), SubscribersAdmitted: s.subs.admitted.Load()}
	for _, h := range s.hosts {
		hs := st.Hosts[h.kind.String()]
		hs.Conns += h.conns.Load()
		hs.Bytes += h.bytes.Load()
		st.Hosts[h.kind.String()] = hs
	}
	s.mu.Lock()
	st.Crawl = clone(s.crawl)
	st.ConsumersRefused = clone(s.consumers.refused)
	st.SubscribersRefused = clone(s.subs.refused)
	s.mu.Unlock()
	return st
}

func clone(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// track registers c to be closed by Stop; after Stop it closes c at once.
// listen opens a listener on a free loopback port, closed by Stop.
func (s *Set) listen() (net.Listener, int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, 0, err
	}
	s.track(ln)
	return ln, ln.Addr().(*net.TCPAddr).Port, nil
}

func (s *Set) track(c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		_ = c.Close()
		return
	}
	s.closers = append(s.closers, c)
}

func (s *Set) count(m map[string]int64, key string) {
	s.mu.Lock()
	m[key]++
	s.mu.Unlock()
}

func (s *Set) blackholeLoop(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.blackhole.Add(1)
		s.track(c) // held open, never read or answered, until Stop
	}
}

func (s *Set) acceptLoop(h *host) {
	defer s.wg.Done()
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		s.track(c)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.serve(h, c)
		}()
	}
}

// serve answers one connection from the relay: describeServer (so that
// requestCrawl's probe succeeds) or the subscription, which gets the
// host's attack.
func (s *Set) serve(h *host, c net.Conn) {
	br := bufio.NewReaderSize(io.LimitReader(c, 64<<10), 4096)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if !strings.HasSuffix(req.URL.Path, "com.atproto.sync.subscribeRepos") {
		body := `{"did":"did:web:` + strings.ReplaceAll(h.name, ":", "%3A") + `","availableUserDomains":[]}`
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		return
	}
	h.conns.Add(1)
	w := &countingWriter{c: c, h: h, max: s.opts.MaxBytesPerConn}
	if h.kind == EndlessHeader {
		s.endlessHeader(w)
		return
	}
	accept := acceptKey(req.Header.Get("Sec-WebSocket-Key"))
	if _, err := fmt.Fprintf(w, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept); err != nil {
		return
	}
	switch h.kind {
	case Trickle:
		s.trickle(w)
	case PingFlood:
		s.pingFlood(w)
	case FutureCursor:
		frame := event.AppendError(nil, &event.ErrorFrame{Error: []byte("FutureCursor"), Message: []byte("cursor in the future")})
		_ = writeBinary(w, frame)
	case InfoFlood:
		s.infoFlood(w)
	case DIDWebFlood:
		s.didWebFlood(w, cursorOf(req))
	}
}

func (s *Set) endlessHeader(w io.Writer) {
	if _, err := io.WriteString(w, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Endless: "); err != nil {
		return
	}
	chunk := bytes.Repeat([]byte("a"), 32<<10)
	for s.ctx.Err() == nil {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

func (s *Set) trickle(w io.Writer) {
	if err := ws.WriteHeader(w, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 4_990_000}); err != nil {
		return
	}
	s.every(150*time.Millisecond, func() bool {
		_, err := w.Write([]byte{0xa1})
		return err == nil
	})
}

func (s *Set) pingFlood(w io.Writer) {
	ping := ws.MustCompileFrame(ws.NewPingFrame([]byte("flood")))
	for s.ctx.Err() == nil {
		if _, err := w.Write(ping); err != nil {
			return
		}
	}
}

func (s *Set) infoFlood(w io.Writer) {
	name := bytes.Repeat([]byte("N"), 64<<10)
	frame := event.AppendInfo(nil, &event.Info{Name: name, Message: []byte("flood")})
	s.every(50*time.Millisecond, func() bool { return writeBinary(w, frame) == nil })
}

// didWebFlood sends one #identity event every 20 ms, cycling through the
// blackhole listeners' did:web DIDs, with seqs after the relay's cursor.
func (s *Set) didWebFlood(w io.Writer, cursor int64) {
	var buf []byte
	seq := cursor
	s.every(20*time.Millisecond, func() bool {
		seq++
		port := s.didPorts[int(seq)%len(s.didPorts)]
		did := fmt.Sprintf("did:web:localhost%%3A%d", port)
		now := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
		buf = event.AppendIdentity(buf[:0], &event.Identity{Seq: seq, DID: []byte(did), Time: []byte(now)})
		return writeBinary(w, buf) == nil
	})
}

// crawlFlood asks the relay to crawl hosts that do not exist, at
// CrawlPerSecond, until Stop. They are named localhost:PORT with ports
// that were just closed, so a relay that probes them is refused at once
// and nothing leaves the machine (not even a DNS query).
func (s *Set) crawlFlood(client *http.Client) {
	defer s.wg.Done()
	var closed []int
	for range 16 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return
		}
		closed = append(closed, ln.Addr().(*net.TCPAddr).Port)
		_ = ln.Close()
	}
	i := 0
	s.every(time.Second/time.Duration(s.opts.CrawlPerSecond), func() bool {
		name := fmt.Sprintf("localhost:%d", closed[i%len(closed)])
		i++
		s.count(s.crawl, requestCrawl(s.ctx, client, s.opts.RelayAPI, name))
		return true
	})
}

// every calls fn once a period until Stop or until fn returns false.
func (s *Set) every(period time.Duration, fn func() bool) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			if !fn() {
				return
			}
		}
	}
}

// flood is one connection flood's answers: admitted, and refused by HTTP
// status (guarded by Set.mu).
type flood struct {
	admitted atomic.Int64
	refused  map[string]int64
}

// connFlood opens idle WebSocket connections to the relay's path until
// Consumers were tried or Stop; admitted ones are held open and never
// read.
func (s *Set) connFlood(f *flood, path string) {
	defer s.wg.Done()
	u := "ws" + strings.TrimPrefix(s.opts.RelayAPI, "http") + path
	for range s.opts.Consumers {
		if s.ctx.Err() != nil {
			return
		}
		dctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		conn, _, _, err := ws.Dial(dctx, u)
		cancel()
		var status ws.StatusError
		switch {
		case err == nil:
			f.admitted.Add(1)
			s.track(conn)
		case errors.As(err, &status):
			s.count(f.refused, fmt.Sprint(int(status)))
		default:
			s.count(f.refused, "error")
		}
	}
}

// requestCrawl posts one anonymous requestCrawl and returns its HTTP
// status, or "error".
func requestCrawl(ctx context.Context, client *http.Client, api, hostname string) string {
	body, _ := json.Marshal(map[string]string{"hostname": hostname})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+"/xrpc/com.atproto.sync.requestCrawl", bytes.NewReader(body))
	if err != nil {
		return "error"
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "error"
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return fmt.Sprint(resp.StatusCode)
}

func cursorOf(req *http.Request) int64 {
	var c int64
	_, _ = fmt.Sscan(req.URL.Query().Get("cursor"), &c)
	return c
}

// acceptKey is the Sec-WebSocket-Accept value for key (RFC 6455 §4.2.2).
func acceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte("258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func writeBinary(w io.Writer, payload []byte) error {
	if err := ws.WriteHeader(w, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(payload))}); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// countingWriter counts a host's bytes and ends the connection at max.
type countingWriter struct {
	c   net.Conn
	h   *host
	n   int64
	max int64
}

var errConnBudget = errors.New("attack: connection byte budget spent")

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.n+int64(len(p)) > w.max {
		return 0, errConnBudget
	}
	_ = w.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	n, err := w.c.Write(p)
	w.n += int64(n)
	w.h.bytes.Add(int64(n))
	return n, err
}
