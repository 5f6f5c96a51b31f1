// Package jsload is `relay bench jetstream`: N Jetstream subscribers with a
// mix of filters against a /subscribe endpoint, for the fan-out figures in
// PERF.md. Each subscriber counts messages and bytes and measures delivery
// latency as receive time minus the event's time_us (both clocks are this
// machine's: the relay stamps time_us when it commits the event).
package jsload

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atrelay/relay/engine/jetstream"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/klauspost/compress/zstd"
)

// filterMix is the filters subscriber i uses: i mod len(filterMix).
var filterMix = []string{
	"",                                     // everything
	"wantedCollections=app.bsky.feed.post", // posts only
	"wantedCollections=app.bsky.feed.*",    // a prefix
	"wantedCollections=app.bsky.graph.follow&wantedCollections=app.bsky.feed.like",
}

type stats struct {
	msgs, bytes atomic.Int64
	mu          sync.Mutex
	lat         []float64 // ms, sampled
}

// RunCLI parses args and runs the subscribers until -duration passes.
func RunCLI(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench jetstream", flag.ContinueOnError)
	fs.SetOutput(stdout)
	base := fs.String("url", "ws://127.0.0.1:2570/subscribe", "Jetstream endpoint")
	n := fs.Int("consumers", 100, "subscribers (filters cycle through a mix: all, posts, app.bsky.feed.*, follows+likes); "+
		"all come from this machine, so the relay needs --jetstream-max-subscribers-per-ip at least this")
	compress := fs.Bool("compress", false, "ask for zstd compression (decoded with the relay's dictionary)")
	dur := fs.Duration("duration", time.Minute, "how long to read")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var dec *zstd.Decoder
	if *compress {
		var err error
		if dec, err = zstd.NewReader(nil, zstd.WithDecoderDicts(jetstream.DictionaryV1())); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	st := &stats{}
	var wg sync.WaitGroup
	var failed atomic.Int64
	var errMu sync.Mutex
	var firstErr error
	for i := range *n {
		u := *base
		q := filterMix[i%len(filterMix)]
		if *compress {
			q = strings.TrimPrefix(q+"&compress=true", "&")
		}
		if q != "" {
			u += "?" + q
		}
		if _, err := url.Parse(u); err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := subscribe(ctx, u, dec, st); err != nil && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				failed.Add(1)
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	st.mu.Lock()
	sort.Float64s(st.lat)
	p := func(q float64) float64 {
		if len(st.lat) == 0 {
			return 0
		}
		return st.lat[min(len(st.lat)-1, int(q*float64(len(st.lat))))]
	}
	fmt.Fprintf(stdout, "subscribers %d (compress %v), %v: %d messages, %.1f MiB on the wire (%.0f KiB/s per subscriber)\n",
		*n, *compress, *dur, st.msgs.Load(), float64(st.bytes.Load())/(1<<20), float64(st.bytes.Load())/1024/dur.Seconds()/float64(*n))
	fmt.Fprintf(stdout, "latency from time_us: p50 %.1f ms  p99 %.1f ms  max %.1f ms (%d samples); failed subscribers %d\n",
		p(0.5), p(0.99), p(1), len(st.lat), failed.Load())
	if firstErr != nil {
		fmt.Fprintf(stdout, "first failure: %v\n", firstErr)
	}
	return nil
}

func subscribe(ctx context.Context, u string, dec *zstd.Decoder, st *stats) error {
	conn, br, _, err := ws.Dial(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close()
	go func() { <-ctx.Done(); conn.Close() }()
	var src io.ReadWriter = conn
	if br != nil {
		src = struct {
			io.Reader
			io.Writer
		}{io.MultiReader(br, conn), conn}
	}
	var ev struct {
		TimeUS int64 `json:"time_us"`
	}
	var buf []byte
	for k := 0; ; k++ {
		msg, _, err := wsutil.ReadServerData(src)
		if err != nil {
			return err
		}
		st.msgs.Add(1)
		st.bytes.Add(int64(len(msg)))
		if k%50 != 0 { // sample latency: decoding every message would measure this tool
			continue
		}
		if dec != nil {
			if buf, err = dec.DecodeAll(msg, buf[:0]); err != nil {
				return err
			}
			msg = buf
		}
		if json.Unmarshal(msg, &ev) == nil && ev.TimeUS > 0 {
			lat := float64(time.Now().UnixMicro()-ev.TimeUS) / 1000
			st.mu.Lock()
			st.lat = append(st.lat, lat)
			st.mu.Unlock()
		}
	}
}
