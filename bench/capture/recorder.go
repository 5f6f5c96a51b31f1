package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// DefaultMaxMessageBytes is the recorder's default message size limit: the
// reference relay's upstream read limit (spec §9.2).
const DefaultMaxMessageBytes = event.MaxFrameBytes

// Errors returned by Recorder.Run.
var (
	// ErrNoSources: Recorder.URLs is empty.
	ErrNoSources = errors.New("capture: no source URLs")
	// ErrBadURL: a source URL is not ws:// or wss://.
	ErrBadURL = errors.New("capture: source URL is not ws:// or wss://")
	// ErrMessageTooLarge: a source sent a message above MaxMessageBytes.
	ErrMessageTooLarge = errors.New("capture: message too large")
)

// Recorder records subscribeRepos streams into a capture. It is configured
// by setting fields in a literal; stop conditions left at zero are unused,
// and Run always stops when its context is cancelled or every source has
// closed.
type Recorder struct {
	// URLs are subscribeRepos endpoints, e.g.
	// ws://127.0.0.1:2583/xrpc/com.atproto.sync.subscribeRepos?cursor=0.
	URLs []string
	// MaxFrames stops the recording after this many frames in total.
	MaxFrames int64
	// MaxDuration stops the recording after this long.
	MaxDuration time.Duration
	// Progress, when set, receives a line with frames, bytes and rates
	// every ProgressEvery (default one second).
	Progress      io.Writer
	ProgressEvery time.Duration
	// PLC, when set, is a PLC directory base URL: after recording, the DID
	// document of every did:plc seen is fetched from it into the snapshot.
	PLC string
	// HTTPClient fetches DID documents; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// MaxMessageBytes bounds one WebSocket message (default DefaultMaxMessageBytes).
	MaxMessageBytes int
	// Note is stored in the capture header.
	Note string
}

// RecordStats summarizes a Run.
type RecordStats struct {
	Frames       int64
	Bytes        int64
	PerSource    []int64
	TextMessages int64   // text messages received (a protocol error; not recorded)
	SourceErrors []error // why each source's connection ended (nil: stopped by Run)
	DIDs         int     // distinct DIDs seen in frames
	Docs         int     // DID documents stored in the snapshot
	DocErrors    int     // DID documents that could not be fetched
	Elapsed      time.Duration
}

// recording is shared by Run's per-source goroutines.
type recording struct {
	maxFrames int64  // static
	maxMsg    int    // static
	stop      func() // static: cancels the recording

	mu    sync.Mutex // guards the fields below
	w     *Writer
	stats RecordStats
	dids  map[string]struct{}
	done  bool // MaxFrames reached or the writer failed
	err   error
}

// Run connects to every URL with a WebSocket, writes every binary message
// it receives to a new capture on w (with receive time, source and seq),
// and stops on context cancellation, after MaxFrames frames or after
// MaxDuration. The capture is complete (trailer, snapshot, footer) when Run
// returns without error. A Recorder may Run any number of times.
func (cfg Recorder) Run(ctx context.Context, w io.Writer) (RecordStats, error) {
	if len(cfg.URLs) == 0 {
		return RecordStats{}, ErrNoSources
	}
	hdr := Header{Created: time.Now().UTC(), Note: cfg.Note}
	for _, s := range cfg.URLs {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") {
			return RecordStats{}, fmt.Errorf("%w: %q", ErrBadURL, s)
		}
		hdr.Sources = append(hdr.Sources, Source{URL: s, Hostname: u.Host, Frames: CountUnknown})
	}
	wr, err := NewWriter(w, hdr)
	if err != nil {
		return RecordStats{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.MaxDuration > 0 {
		ctx, cancel = context.WithTimeout(ctx, cfg.MaxDuration)
		defer cancel()
	}
	rc := &recording{maxFrames: cfg.MaxFrames, maxMsg: cfg.MaxMessageBytes, stop: cancel, w: wr, dids: map[string]struct{}{}}
	if rc.maxMsg <= 0 {
		rc.maxMsg = DefaultMaxMessageBytes
	}
	rc.stats.PerSource = make([]int64, len(cfg.URLs))
	rc.stats.SourceErrors = make([]error, len(cfg.URLs))

	conns := make([]net.Conn, 0, len(cfg.URLs))
	readers := make([]io.Reader, 0, len(cfg.URLs))
	for _, s := range cfg.URLs {
		conn, br, _, err := ws.Dialer{}.Dial(ctx, s)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return RecordStats{}, fmt.Errorf("capture: dialing %s: %w", s, err)
		}
		conns = append(conns, conn)
		if br != nil {
			readers = append(readers, io.MultiReader(br, conn))
		} else {
			readers = append(readers, conn)
		}
	}
	// Cancellation unblocks the readers by closing their connections.
	stopConns := context.AfterFunc(ctx, func() {
		for _, c := range conns {
			c.Close()
		}
	})
	defer stopConns()

	start := time.Now()
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := rc.readLoop(i, conns[i], readers[i])
			if ctx.Err() != nil {
				err = nil // we closed it
			}
			rc.mu.Lock()
			rc.stats.SourceErrors[i] = err
			rc.mu.Unlock()
		}()
	}
	progressDone := make(chan struct{})
	if cfg.Progress != nil {
		go rc.progress(ctx, cfg.Progress, cfg.ProgressEvery, start, progressDone)
	} else {
		close(progressDone)
	}
	wg.Wait()
	cancel()
	<-progressDone
	for _, c := range conns {
		c.Close()
	}

	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.stats.Elapsed = time.Since(start)
	rc.stats.DIDs = len(rc.dids)
	if rc.err != nil {
		return rc.stats, rc.err
	}
	if cfg.PLC != "" {
		client := cfg.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: 10 * time.Second}
		}
		snap, failed := fetchDocs(context.WithoutCancel(ctx), client, cfg.PLC, rc.dids)
		rc.stats.Docs, rc.stats.DocErrors = len(snap), failed
		wr.SetSnapshot(snap)
	}
	return rc.stats, wr.Close()
}

// readLoop reads one source until its connection ends.
func (rc *recording) readLoop(src int, conn net.Conn, in io.Reader) error {
	rd := wsutil.Reader{
		Source:         in,
		State:          ws.StateClientSide,
		MaxMessageSize: int64(rc.maxMsg),
		OnIntermediate: wsutil.ControlFrameHandler(conn, ws.StateClientSide),
	}
	control := wsutil.ControlFrameHandler(conn, ws.StateClientSide)
	buf := make([]byte, 0, 64<<10)
	for {
		h, err := rd.NextFrame()
		if err != nil {
			if errors.Is(err, wsutil.ErrMessageTooLarge) {
				return fmt.Errorf("%w: %d bytes", ErrMessageTooLarge, h.Length)
			}
			return err
		}
		if h.OpCode.IsControl() {
			if err := control(h, &rd); err != nil {
				return err
			}
			continue
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := rd.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
		}
		recv := time.Now().UnixNano()
		if h.OpCode == ws.OpText {
			rc.mu.Lock()
			rc.stats.TextMessages++
			rc.mu.Unlock()
			continue
		}
		// A frame that does not decode is still recorded: the capture keeps
		// what the wire carried, and its seq is then 0.
		info, _ := PeekFrame(buf)
		if !rc.add(Record{Source: src, RecvTime: recv, Seq: info.Seq, Frame: buf}, info.DID) {
			return nil
		}
	}
}

// add writes one record; it reports false once recording must stop.
func (rc *recording) add(rec Record, did string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.done {
		return false
	}
	if rec.Seq < 0 || rec.Seq > maxSeq {
		rec.Seq = 0
	}
	if err := rc.w.Write(rec); err != nil {
		rc.err, rc.done = err, true
		rc.stop()
		return false
	}
	if did != "" {
		if _, ok := rc.dids[did]; !ok && len(did) <= MaxDIDBytes {
			rc.dids[did] = struct{}{}
		}
	}
	rc.stats.Frames++
	rc.stats.Bytes += int64(len(rec.Frame))
	rc.stats.PerSource[rec.Source]++
	if rc.maxFrames > 0 && rc.stats.Frames >= rc.maxFrames {
		rc.done = true
		rc.stop()
		return false
	}
	return true
}

func (rc *recording) progress(ctx context.Context, out io.Writer, every time.Duration, start time.Time, done chan<- struct{}) {
	defer close(done)
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var lastFrames, lastBytes int64
	last := start
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			rc.mu.Lock()
			f, b := rc.stats.Frames, rc.stats.Bytes
			rc.mu.Unlock()
			dt := now.Sub(last).Seconds()
			fmt.Fprintf(out, "capture: %s %d frames, %.1f MB, %.0f frames/s, %.1f MB/s\n",
				now.Sub(start).Truncate(time.Second), f, float64(b)/1e6,
				float64(f-lastFrames)/dt, float64(b-lastBytes)/1e6/dt)
			lastFrames, lastBytes, last = f, b, now
		}
	}
}

// fetchDocs resolves every did:plc in dids from the PLC directory at base,
// a few at a time. It returns the documents found and how many failed.
func fetchDocs(ctx context.Context, client *http.Client, base string, dids map[string]struct{}) (Snapshot, int) {
	list := make([]string, 0, len(dids))
	for d := range dids {
		if len(d) > 8 && d[:8] == "did:plc:" {
			list = append(list, d)
		}
	}
	sort.Strings(list)
	const workers = 8
	var (
		mu     sync.Mutex
		snap   = make(Snapshot, len(list))
		failed int
		wg     sync.WaitGroup
		next   = make(chan string)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for did := range next {
				doc, err := fetchDoc(ctx, client, base, did)
				mu.Lock()
				if err != nil {
					failed++
				} else {
					snap[did] = doc
				}
				mu.Unlock()
			}
		}()
	}
	for _, d := range list {
		next <- d
	}
	close(next)
	wg.Wait()
	return snap, failed
}

func fetchDoc(ctx context.Context, client *http.Client, base, did string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/"+did, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxDocBytes+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("capture: PLC %s: HTTP %d", did, resp.StatusCode)
	}
	if len(body) > MaxDocBytes {
		return nil, fmt.Errorf("%w: document of %s", ErrLimit, did)
	}
	return body, nil
}
