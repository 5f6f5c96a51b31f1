package generate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/atrelay/relay/bench/capture"
	"github.com/atrelay/relay/bench/fleet"
	"github.com/atrelay/relay/bench/replay"
	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/event"
)

func generate(t testing.TB, opts Options) (*capture.Capture, []byte, Stats) {
	t.Helper()
	var buf bytes.Buffer
	st, err := Generate(&buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := capture.OpenReaderAt(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	return c, buf.Bytes(), st
}

// framesBySource reads every record of c, grouped by source.
func framesBySource(t *testing.T, c *capture.Capture) [][][]byte {
	t.Helper()
	out, err := capture.FramesBySource(c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGenerateReplays generates a small capture, checks its shape, replays
// it through bench/replay into a capture.Recorder and compares the frames
// byte for byte.
func TestGenerateReplays(t *testing.T) {
	opts := Options{Workload: fleet.Workload{Hosts: 3, AccountsPerHost: 4, Seed: 11,
		DeactivateShare: 0.05, IdentityShare: 0.05, SyncShare: 0.05}, Actions: 300}
	c, _, st := generate(t, opts)
	if st.Accounts != 12 || st.Frames < 12*4+300*9/10 {
		t.Fatalf("stats %+v", st)
	}
	if len(c.Identities) != 12 {
		t.Fatalf("%d DID documents, want 12", len(c.Identities))
	}
	for did, doc := range c.Identities {
		var d struct {
			ID  string `json:"id"`
			AKA []string
		}
		if err := json.Unmarshal(doc, &d); err != nil || d.ID != did {
			t.Fatalf("doc for %s: %v %s", did, err, doc)
		}
	}
	want := framesBySource(t, c)
	var dec event.Decoder
	var m event.Message
	kinds := map[event.Kind]int{}
	var total int
	for src, frames := range want {
		for i, fr := range frames {
			if err := dec.Decode(fr, &m); err != nil {
				t.Fatalf("source %d frame %d: %v", src, i, err)
			}
			if seq, _ := m.Seq(); seq != int64(i+1) {
				t.Fatalf("source %d frame %d has seq %d", src, i, seq)
			}
			kinds[m.Kind]++
		}
		total += len(frames)
	}
	if kinds[event.KindCommit] < 200 || kinds[event.KindSync] < 12 || kinds[event.KindAccount] < 12 || kinds[event.KindIdentity] < 12 {
		t.Errorf("kinds %v", kinds)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // hang guard only
	defer cancel()
	fl, err := replay.Start(ctx, c, replay.Options{Gated: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	var urls []string
	for _, h := range fl.Replay.Hosts() {
		urls = append(urls, "ws://"+h.Addr+"/xrpc/com.atproto.sync.subscribeRepos?cursor=0")
	}
	fl.Replay.Start()
	var rec bytes.Buffer
	rs, err := capture.Recorder{URLs: urls, MaxFrames: int64(total)}.Run(ctx, &rec)
	if err != nil || rs.Frames != int64(total) {
		t.Fatalf("recorded %d of %d frames: %v", rs.Frames, total, err)
	}
	rc, err := capture.OpenReaderAt(bytes.NewReader(rec.Bytes()), int64(rec.Len()))
	if err != nil {
		t.Fatal(err)
	}
	got := framesBySource(t, rc)
	for src := range want {
		if len(got[src]) != len(want[src]) {
			t.Fatalf("source %d: replayed %d frames, generated %d", src, len(got[src]), len(want[src]))
		}
		for i := range want[src] {
			if !bytes.Equal(got[src][i], want[src][i]) {
				t.Fatalf("source %d frame %d differs after replay", src, i)
			}
		}
	}
}

// TestGenerateDeterministic checks that the worker count does not change
// the output (secp256k1 signatures are deterministic, RFC 6979).
func TestGenerateDeterministic(t *testing.T) {
	opts := Options{Workload: fleet.Workload{Hosts: 2, AccountsPerHost: 3, Seed: 5,
		Start: time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC)}, Actions: 200, Workers: 1}
	_, a, _ := generate(t, opts)
	opts.Workers = 3
	_, b, _ := generate(t, opts)
	if !bytes.Equal(a, b) {
		t.Error("output depends on the number of workers")
	}
}

func TestGenerateBadOptions(t *testing.T) {
	_, err := Generate(io.Discard, Options{Workload: fleet.Workload{Hosts: 60000}})
	if !errors.Is(err, ErrBadOptions) {
		t.Errorf("60,000 hosts: %v", err)
	}
	_, err = Generate(io.Discard, Options{Workload: fleet.Workload{HostSkew: 0.5}})
	if !errors.Is(err, fleet.ErrBadWorkload) {
		t.Errorf("bad skew: %v", err)
	}
}

// BenchmarkGenerate measures generation rate on every core.
func BenchmarkGenerate(b *testing.B) {
	for _, curve := range []atcrypto.Curve{atcrypto.K256, atcrypto.P256} {
		b.Run(curve.String(), func(b *testing.B) {
			var frames int64
			var elapsed time.Duration
			for b.Loop() {
				st, err := Generate(io.Discard, Options{Workload: fleet.Workload{Hosts: 20, AccountsPerHost: 50, Curve: curve, Seed: 1}, Actions: 5000})
				if err != nil {
					b.Fatal(err)
				}
				frames += st.Frames
				elapsed += st.Elapsed
			}
			b.ReportMetric(float64(frames)/elapsed.Seconds(), "frames/s")
		})
	}
}
