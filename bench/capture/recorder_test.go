package capture

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// fakeFirehose upgrades and sends msgs (text when the string starts with
// "text:"), then keeps the connection open until the client leaves.
func fakeFirehose(t *testing.T, msgs []string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		for _, m := range msgs {
			op, p := ws.OpBinary, m
			if strings.HasPrefix(m, "text:") {
				op, p = ws.OpText, m[5:]
			}
			if err := wsutil.WriteServerMessage(conn, op, []byte(p)); err != nil {
				return
			}
		}
		for { // answer pings until the recorder hangs up
			if _, _, err := wsutil.ReadClientData(conn); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func wsURL(s *httptest.Server) string {
	return "ws" + strings.TrimPrefix(s.URL, "http") + "/xrpc/com.atproto.sync.subscribeRepos"
}

const (
	identity1 = "\xa2\x61t\x69#identity\x62op\x01\xa2\x63did\x78\x20did:plc:aaaaaaaaaaaaaaaaaaaaaaaa\x63seq\x01"
	identity2 = "\xa2\x61t\x69#identity\x62op\x01\xa2\x63did\x78\x20did:plc:bbbbbbbbbbbbbbbbbbbbbbbb\x63seq\x02"
)

// syncBuffer lets the test read progress lines written by another goroutine.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func TestRecorder(t *testing.T) {
	fh := fakeFirehose(t, []string{identity1, "text:hello", "not cbor", identity2})
	plc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/did:plc:aaaaaaaaaaaaaaaaaaaaaaaa" {
			w.Write([]byte(`{"id":"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"}`))
			return
		}
		http.NotFound(w, r)
	}))
	defer plc.Close()

	var out bytes.Buffer
	st, err := Recorder{URLs: []string{wsURL(fh) + "?cursor=0"}, MaxFrames: 3, PLC: plc.URL, Note: "n"}.Run(context.Background(), &out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Frames != 3 || st.TextMessages != 1 || st.DIDs != 2 || st.Docs != 1 || st.DocErrors != 1 {
		t.Fatalf("stats: %+v", st)
	}
	c, err := OpenReaderAt(bytes.NewReader(out.Bytes()), int64(out.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if c.Header.Note != "n" || c.Header.Sources[0].Hostname != strings.TrimPrefix(fh.URL, "http://") {
		t.Fatalf("header: %+v", c.Header)
	}
	if len(c.Identities) != 1 {
		t.Fatalf("snapshot: %v", c.Identities)
	}
	it, _ := c.Records()
	defer it.Close()
	recs, err := readAll(it)
	if err != nil {
		t.Fatal(err)
	}
	wantFrames := []string{identity1, "not cbor", identity2}
	wantSeqs := []int64{1, 0, 2}
	for i, r := range recs {
		if string(r.Frame) != wantFrames[i] || r.Seq != wantSeqs[i] || r.RecvTime == 0 {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
}

func TestRecorderStops(t *testing.T) {
	fh := fakeFirehose(t, []string{identity1})
	t.Run("duration", func(t *testing.T) {
		var progress syncBuffer
		st, err := Recorder{URLs: []string{wsURL(fh)}, MaxDuration: 50 * time.Millisecond,
			Progress: &progress, ProgressEvery: 10 * time.Millisecond}.Run(context.Background(), &bytes.Buffer{})
		if err != nil || st.Frames != 1 {
			t.Fatalf("%+v %v", st, err)
		}
		progress.mu.Lock()
		defer progress.mu.Unlock()
		if !strings.Contains(progress.b.String(), "1 frames") {
			t.Fatalf("progress output: %q", progress.b.String())
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() {
			_, err := Recorder{URLs: []string{wsURL(fh)}}.Run(ctx, &bytes.Buffer{})
			done <- err
		}()
		cancel()
		// Cancelled while dialing is an error, once connected it is a clean stop.
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	})
	t.Run("bad url", func(t *testing.T) {
		if _, err := (Recorder{URLs: []string{"http://x"}}).Run(context.Background(), &bytes.Buffer{}); !errors.Is(err, ErrBadURL) {
			t.Fatalf("got %v", err)
		}
		if _, err := (Recorder{}).Run(context.Background(), &bytes.Buffer{}); !errors.Is(err, ErrNoSources) {
			t.Fatalf("got %v", err)
		}
	})
}
