package resync

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Hostile PDSes: each test serves getRepo answers built to make the relay
// spend memory or time, through a real socket on 127.0.0.1, and asserts
// what the relay spent. Allocation is measured as the growth of
// runtime.MemStats.TotalAlloc (everything allocated, freed or not, so a
// collection in between cannot hide a spike).

const mib = 1 << 20

// allocated returns the bytes allocated by the process so far.
func allocated() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// hostileBound is how much a fetch that must be refused may allocate,
// everything included (request, identity lookup, first buffers).
const hostileBound = 16 * mib

// gzipBomb returns about 200 KiB of gzip that inflates to 200 MiB of
// zeros: 200 copies of one gzip member of 1 MiB (concatenated members are
// one valid gzip stream).
func gzipBomb(t *testing.T) []byte {
	t.Helper()
	var member bytes.Buffer
	zw, err := gzip.NewWriterLevel(&member, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(make([]byte, mib)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.Repeat(member.Bytes(), 200)
}

// resyncOne enqueues did and returns its result with what the process
// allocated meanwhile.
func resyncOne(t *testing.T, rs *Resyncer, col *collector, did, host string) (got, uint64) {
	t.Helper()
	before := allocated()
	if !rs.Enqueue(did, host) {
		t.Fatal("Enqueue refused")
	}
	g := col.next(t)
	return g, allocated() - before
}

// TestGzipBomb: a getRepo answer of 200 KiB gzip declaring
// Content-Encoding: gzip is refused without inflating it, whatever client
// the resyncer uses (a default http.Transport would inflate it to 200 MiB
// if it had asked for gzip itself).
func TestGzipBomb(t *testing.T) {
	bomb := gzipBomb(t)
	p := newFakePDS(t)
	var sawEncoding sync.Map
	d := did(1)
	p.add(d, newKey(t, 3).Public().Multibase(), func(w http.ResponseWriter, r *http.Request) {
		sawEncoding.Store(r.Header.Get("Accept-Encoding"), true)
		w.Header().Set("Content-Type", "application/vnd.ipld.car")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(len(bomb)))
		w.Write(bomb)
	})
	for _, tc := range []struct {
		name   string
		client *http.Client
	}{{"default-client", nil}, {"caller-client", &http.Client{Transport: http.DefaultTransport}}} {
		t.Run(tc.name, func(t *testing.T) {
			col := newCollector()
			rs := newResyncer(t, Config{Identities: newResolver(t, p.plc.URL()), OnResult: col.onResult,
				Retries: -1, MemoryBytes: 1 << 30, HTTPClient: tc.client})
			g, alloc := resyncOne(t, rs, col, d, p.name)
			if g.outcome != FetchError || !errors.Is(g.err, ErrContentEncoding) {
				t.Fatalf("outcome %s (%v), want fetch_error ErrContentEncoding", g.outcome, g.err)
			}
			if alloc > hostileBound {
				t.Fatalf("allocated %d MiB for a %d KiB gzip bomb", alloc/mib, len(bomb)>>10)
			}
		})
	}
	sawEncoding.Range(func(k, _ any) bool {
		if k != "identity" {
			t.Errorf("request sent Accept-Encoding %q", k)
		}
		return true
	})
}

// TestDeclaredLengthNeverSent: a Content-Length of 255 MiB followed by
// nothing costs a first buffer, not 255 MiB, and the attempt ends at
// FetchTimeout; a declared length the share cannot hold fails at once.
func TestDeclaredLengthNeverSent(t *testing.T) {
	const declared = 255 * mib
	p := newFakePDS(t)
	d := did(1)
	p.add(d, newKey(t, 3).Public().Multibase(), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(declared))
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})

	t.Run("deadline", func(t *testing.T) {
		col := newCollector()
		rs := newResyncer(t, Config{Identities: newResolver(t, p.plc.URL()), OnResult: col.onResult,
			Retries: -1, MemoryBytes: 1 << 30, FetchTimeout: 300 * time.Millisecond})
		g, alloc := resyncOne(t, rs, col, d, p.name)
		if g.outcome != FetchError || !errors.Is(g.err, context.DeadlineExceeded) {
			t.Fatalf("outcome %s (%v), want fetch_error at the deadline", g.outcome, g.err)
		}
		if alloc > hostileBound {
			t.Fatalf("allocated %d MiB for a body that never came", alloc/mib)
		}
	})

	t.Run("over-share", func(t *testing.T) {
		col := newCollector()
		rs := newResyncer(t, Config{Identities: newResolver(t, p.plc.URL()), OnResult: col.onResult,
			Retries: -1, MemoryBytes: 64 * mib, FetchTimeout: time.Minute})
		g, alloc := resyncOne(t, rs, col, d, p.name)
		if g.outcome != TooLarge || !errors.Is(g.err, ErrRepoMemory) {
			t.Fatalf("outcome %s (%v), want too_large ErrRepoMemory", g.outcome, g.err)
		}
		if alloc > hostileBound {
			t.Fatalf("allocated %d MiB", alloc/mib)
		}
	})
}

// TestEndlessBody: a chunked body that never ends fails as soon as it
// passes MaxRepoBytes or outgrows the memory share, and the server sees
// the relay stop reading.
func TestEndlessBody(t *testing.T) {
	p := newFakePDS(t)
	d := did(1)
	var written atomic.Int64
	handlerDone := make(chan struct{}, 2)
	chunk := make([]byte, 64<<10)
	p.add(d, newKey(t, 3).Public().Multibase(), func(w http.ResponseWriter, r *http.Request) {
		defer func() { handlerDone <- struct{}{} }()
		written.Store(0)
		for {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	for _, tc := range []struct {
		name      string
		cfg       Config
		limit     int64
		wantErr   error
		wantAlloc uint64
	}{
		{"max-repo-bytes", Config{MaxRepoBytes: 4 * mib, MemoryBytes: 1 << 30}, 4 * mib, ErrTooLarge, hostileBound},
		{"memory-share", Config{MemoryBytes: 8 * mib}, 8 * mib, ErrRepoMemory, hostileBound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			col := newCollector()
			cfg := tc.cfg
			cfg.Identities, cfg.OnResult, cfg.Retries = newResolver(t, p.plc.URL()), col.onResult, -1
			rs := newResyncer(t, cfg)
			g, alloc := resyncOne(t, rs, col, d, p.name)
			if g.outcome != TooLarge || !errors.Is(g.err, tc.wantErr) {
				t.Fatalf("outcome %s (%v), want too_large %v", g.outcome, g.err, tc.wantErr)
			}
			if alloc > tc.wantAlloc {
				t.Fatalf("allocated %d MiB for a limit of %d MiB", alloc/mib, tc.limit/mib)
			}
			<-handlerDone // the relay closed the connection
			// What the server got out is the limit plus socket buffers.
			if n := written.Load(); n > tc.limit+32*mib {
				t.Fatalf("server wrote %d MiB before the relay hung up", n/mib)
			}
		})
	}
}

// TestTricklingBody: a body that keeps a connection busy with a byte now
// and then is dropped after one MinRateWindow, long before FetchTimeout.
func TestTricklingBody(t *testing.T) {
	p := newFakePDS(t)
	d := did(1)
	p.add(d, newKey(t, 3).Public().Multibase(), func(w http.ResponseWriter, r *http.Request) {
		for {
			if _, err := w.Write([]byte{0}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	col := newCollector()
	rs := newResyncer(t, Config{Identities: newResolver(t, p.plc.URL()), OnResult: col.onResult, Retries: -1,
		FetchTimeout: time.Hour, MinRateWindow: 200 * time.Millisecond, MinReadBytesPerSecond: 1000})
	g, _ := resyncOne(t, rs, col, d, p.name)
	if g.outcome != FetchError || !errors.Is(g.err, ErrSlowBody) {
		t.Fatalf("outcome %s (%v), want fetch_error ErrSlowBody", g.outcome, g.err)
	}
}

// TestShareBoundsConcurrentResyncs: eight workers fetch eight slow
// repositories of about 1 MiB each through a 4 MiB share. The bytes
// reserved at once never exceed the share, every resync gets through
// (waits, and the occasional give-back, resolve), and everything is
// released at the end.
func TestShareBoundsConcurrentResyncs(t *testing.T) {
	const n, share = 8, 4 * mib
	p := newFakePDS(t)
	key := newKey(t, 3)
	tr := buildRepo(t, did(1), key, posts(6000), time.Now())
	if len(tr.car) < 600<<10 {
		t.Fatalf("repository of %d bytes, want about 1 MiB", len(tr.car))
	}
	slow := func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < len(tr.car); i += 32 << 10 {
			if _, err := w.Write(tr.car[i:min(i+32<<10, len(tr.car))]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(5 * time.Millisecond)
		}
	}
	var dids []string
	for i := range n {
		// Every DID gets the same CAR: only did(1) verifies, the others
		// fail on the commit's DID after the whole path ran.
		dids = append(dids, did(i+1))
		p.add(did(i+1), key.Public().Multibase(), slow)
	}
	col := newCollector()
	set := metrics.NewSet()
	rs := newResyncer(t, Config{Identities: newResolver(t, p.plc.URL()), OnResult: col.onResult, Metrics: set,
		Concurrency: n, MemoryBytes: share, Retries: 100})
	for _, d := range dids {
		rs.Enqueue(d, p.name)
	}
	for d, g := range col.collect(t, n) {
		want := VerifyError
		if d == did(1) {
			want = OK
		}
		if g.outcome != want {
			t.Fatalf("%s: %s (%v), want %s", d, g.outcome, g.err, want)
		}
	}
	rs.Close()
	used, peak := rs.mem.stats()
	if peak > share || peak < int64(len(tr.car)) {
		t.Fatalf("peak reservation %d, want between one repository (%d) and the share (%d)", peak, len(tr.car), share)
	}
	if used != 0 || set.GetOrCreateGauge("relay_resync_memory_reserved_bytes", nil).Get() != 0 {
		t.Fatalf("%d bytes still reserved after every resync ended", used)
	}
	t.Logf("repository %d KiB, peak %d KiB of %d KiB; %d give-backs", len(tr.car)>>10, peak>>10, share>>10,
		set.GetOrCreateCounter("relay_resync_memory_busy_total").Get())
}
