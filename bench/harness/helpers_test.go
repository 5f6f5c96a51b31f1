package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/atrelay/relay/bench/capture"
	"github.com/atrelay/relay/engine/upstream"
	"github.com/atrelay/relay/internal/fixtures"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// sharedFrames returns the first n frames of each of the first hosts of
// the shared capture (fixtures captures/realpds-2), with their records.
func sharedFrames(t testing.TB, hosts, n int) (*capture.Capture, [][]capture.Record) {
	t.Helper()
	c, err := capture.ImportShared(fixtures.Path("captures/realpds-2"))
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]capture.Record, hosts)
	if err := c.Each(func(r capture.Record) error {
		if r.Source < hosts && len(out[r.Source]) < n {
			r.Frame = bytes.Clone(r.Frame)
			out[r.Source] = append(out[r.Source], r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return c, out
}

// smallCapture writes a capture file holding the first n frames of the
// first hosts of the shared capture, and returns its path and the number
// of commits in it.
func smallCapture(t testing.TB, hosts, n int) (string, int) {
	t.Helper()
	c, recs := sharedFrames(t, hosts, n)
	hdr := capture.Header{Created: c.Header.Created, Note: "harness test", Sources: c.Header.Sources[:hosts]}
	for i := range hdr.Sources {
		hdr.Sources[i].Frames = int64(len(recs[i]))
	}
	path := filepath.Join(t.TempDir(), "small.cap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := capture.NewWriter(f, hdr)
	if err != nil {
		t.Fatal(err)
	}
	commits := 0
	for _, hr := range recs {
		for _, r := range hr {
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
			info, err := capture.PeekFrame(r.Frame)
			if err != nil {
				t.Fatal(err)
			}
			if info.Type == "#commit" {
				commits++
			}
		}
	}
	w.SetSnapshot(c.Identities)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, commits
}

// miniRelay is a stand-in relay: requestCrawl makes it subscribe to a
// host; every upstream frame becomes a small re-sequenced frame carrying
// the type, DID and rev; consumers get the live stream; /metrics serves
// this process's Go and process metrics plus an ingest counter. Faults
// make it skip a seq (gapAt) or send a frame twice (dupAt).
type miniRelay struct {
	api, metricsURL string
	gapAt, dupAt    int64 // static: faults by output seq; 0 = none

	set      *metrics.Set
	ingest   *metrics.Counter
	pipeline *metrics.Histogram // relay_pipeline_seconds: read to publish

	mu   sync.Mutex // guards the fields below
	cond *sync.Cond
	log  [][]byte
	seq  int64
	done bool

	wg   sync.WaitGroup
	srv  *httptest.Server
	stop context.CancelFunc
	ctx  context.Context

	// roots, when set, is trusted for wss:// hosts (pds-N.localhost:PORT,
	// dialed on loopback); nil trusts only the system roots.
	roots atomic.Pointer[x509.CertPool]
	// maxHosts, when set, is how many requestCrawls it accepts; beyond
	// it answers 429, like a relay whose budget holds no more hosts.
	maxHosts, hosts atomic.Int64
}

func newMiniRelay(t testing.TB, gapAt, dupAt int64) *miniRelay {
	t.Helper()
	r := &miniRelay{gapAt: gapAt, dupAt: dupAt, set: metrics.NewSet()}
	r.cond = sync.NewCond(&r.mu)
	r.ingest = r.set.NewCounter("relay_upstream_frames_total")
	r.pipeline = r.set.NewHistogram("relay_pipeline_seconds")
	r.set.NewCounter(`relay_ingest_dropped_total{reason="bad_sig"}`).Add(3)
	r.ctx, r.stop = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("/xrpc/com.atproto.sync.requestCrawl", r.requestCrawl)
	mux.HandleFunc("/xrpc/com.atproto.sync.subscribeRepos", r.subscribe)
	mux.HandleFunc("/xrpc/_health", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		metrics.WriteProcessMetrics(w)
		r.set.WritePrometheus(w)
	})
	r.srv = httptest.NewServer(mux)
	r.api = r.srv.URL
	r.metricsURL = r.srv.URL + "/metrics"
	t.Cleanup(r.close)
	return r
}

func (r *miniRelay) close() {
	r.stop()
	r.mu.Lock()
	r.done = true
	r.cond.Broadcast()
	r.mu.Unlock()
	r.srv.CloseClientConnections()
	r.srv.Close()
	r.wg.Wait()
}

func (r *miniRelay) requestCrawl(w http.ResponseWriter, req *http.Request) {
	var body struct{ Hostname string }
	if json.NewDecoder(req.Body).Decode(&body) != nil || body.Hostname == "" {
		http.Error(w, `{"error":"BadRequest"}`, http.StatusBadRequest)
		return
	}
	if max := r.maxHosts.Load(); max > 0 && r.hosts.Add(1) > max {
		http.Error(w, `{"error":"RateLimitExceeded"}`, http.StatusTooManyRequests)
		return
	}
	d := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, network, upstream.DevDialAddr(addr))
	}}
	scheme := "ws://"
	if !strings.HasPrefix(body.Hostname, "localhost:") {
		scheme = "wss://"
		d.TLSConfig = &tls.Config{RootCAs: r.roots.Load()}
	}
	conn, _, _, err := d.Dial(r.ctx, scheme+body.Hostname+"/xrpc/com.atproto.sync.subscribeRepos")
	if err != nil {
		http.Error(w, `{"error":"HostNotFound"}`, http.StatusBadRequest)
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer conn.Close()
		stop := context.AfterFunc(r.ctx, func() { conn.Close() })
		defer stop()
		for {
			msg, err := wsutil.ReadServerBinary(conn)
			if err != nil {
				return
			}
			start := time.Now()
			r.ingest.Inc()
			r.publish(msg)
			r.pipeline.UpdateDuration(start)
		}
	}()
}

// publish re-sequences one upstream frame.
func (r *miniRelay) publish(up []byte) {
	var fi frameInfo
	if scanFrame(up, &fi) != nil || !fi.hasSeq {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	if r.seq == r.gapAt {
		r.seq++
	}
	f := encodeFrame(string(fi.typ), r.seq, string(fi.did), string(fi.rev))
	r.log = append(r.log, f)
	if r.seq == r.dupAt {
		r.log = append(r.log, f)
	}
	r.cond.Broadcast()
}

func (r *miniRelay) subscribe(w http.ResponseWriter, req *http.Request) {
	// The live position is taken before the handshake answer: a consumer
	// that has seen the upgrade may already have let the harness open the
	// gate, and frames published from then on must reach it.
	r.mu.Lock()
	pos := len(r.log)
	r.mu.Unlock()
	conn, _, _, err := ws.UpgradeHTTP(req, w)
	if err != nil {
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(r.ctx, func() { conn.Close() })
	defer stop()
	go io.Copy(io.Discard, conn) // clients send only control frames
	for {
		r.mu.Lock()
		for pos == len(r.log) && !r.done {
			r.cond.Wait()
		}
		if r.done {
			r.mu.Unlock()
			return
		}
		batch := r.log[pos:]
		r.mu.Unlock()
		for _, f := range batch {
			if wsutil.WriteServerBinary(conn, f) != nil {
				return
			}
		}
		pos += len(batch)
	}
}

// encodeFrame builds a minimal firehose message: {op:1, t} then a body
// with seq, repo (commits) or did, and rev when given.
func encodeFrame(typ string, seq int64, did, rev string) []byte {
	b := []byte{0xa2}
	b = cborString(b, "t")
	b = cborString(b, typ)
	b = cborString(b, "op")
	b = append(b, 0x01)
	n := byte(2)
	if rev != "" {
		n++
	}
	b = append(b, 0xa0|n)
	b = cborString(b, "seq")
	b = append(b, 0x1b)
	b = binary.BigEndian.AppendUint64(b, uint64(seq))
	key := "did"
	if typ == "#commit" {
		key = "repo"
	}
	b = cborString(b, key)
	b = cborString(b, did)
	if rev != "" {
		b = cborString(b, "rev")
		b = cborString(b, rev)
	}
	return b
}

func cborString(b []byte, s string) []byte {
	switch {
	case len(s) < 24:
		b = append(b, 0x60|byte(len(s)))
	case len(s) < 256:
		b = append(b, 0x78, byte(len(s)))
	default:
		b = append(b, 0x79, byte(len(s)>>8), byte(len(s)))
	}
	return append(b, s...)
}

// quietConfig is a fast test config.
func quietConfig(path string, consumers int) Config {
	return Config{Capture: path, Consumers: consumers, SampleInterval: 20 * time.Millisecond,
		Timeout: time.Minute, ConnectTimeout: 10 * time.Second}
}

// reportKeys decodes a report's JSON into a generic map.
func reportKeys(t *testing.T, r Report) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func hasFailure(r Report, substr string) bool {
	for _, f := range r.Failures {
		if strings.Contains(f, substr) {
			return true
		}
	}
	return false
}

// coldCommits counts the commits of the capture at path that are cold
// (wantCold) for an as-fast-as-possible run: those its known-accounts
// latency leaves out.
func coldCommits(t testing.TB, path string) int {
	t.Helper()
	c, err := capture.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []capture.Record
	err = c.Each(func(r capture.Record) error {
		r.Frame = bytes.Clone(r.Frame)
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cold, _ := wantCold(t, recs, 0)
	return len(cold)
}

// wantCold is the "did rev" of every commit of recs that comes less than
// coldWindow after its account's first frame, each host's receive times
// taken as their running maximum (as the replay paces them) and scaled by
// speed (capture time at speed ≤ 0), and how many commits recs has.
func wantCold(t testing.TB, recs []capture.Record, speed float64) (map[string]bool, int) {
	t.Helper()
	firstAt, maxRecv := map[string]int64{}, map[int]int64{}
	cold, commits := map[string]bool{}, 0
	for _, r := range recs {
		maxRecv[r.Source] = max(maxRecv[r.Source], r.RecvTime)
		at := maxRecv[r.Source]
		info, err := capture.PeekFrame(r.Frame)
		if err != nil {
			t.Fatal(err)
		}
		first, seen := firstAt[info.DID]
		if !seen {
			firstAt[info.DID] = at
		}
		if info.Type != "#commit" {
			continue
		}
		commits++
		var fi frameInfo
		if err := scanFrame(r.Frame, &fi); err != nil {
			t.Fatal(err)
		}
		since := float64(at - first)
		if speed > 0 {
			since /= speed
		}
		if !seen || since < float64(coldWindow) {
			cold[info.DID+" "+string(fi.rev)] = true
		}
	}
	return cold, commits
}
