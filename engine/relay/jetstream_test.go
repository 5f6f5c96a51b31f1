package relay

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/jetstream"
	"github.com/atrelay/relay/store"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// TestJetstreamFromRelayLog replays the realpds-2 capture through the relay
// and reads the Jetstream stream from cursor 0 over the relay's own store:
// one commit event per record operation and one event per #identity and
// #account (capture FORMAT.md: 18,616 ops, 1,391 #identity, 1,200 #account;
// #sync frames have no Jetstream form).
func TestJetstreamFromRelayLog(t *testing.T) {
	fl := startFleet(t, true)
	h := startRelay(t, fl, t.TempDir(), testConfig(), store.NoSync)
	defer h.stop()
	h.crawlAll()
	fl.Replay.Start()
	h.waitCaughtUp()

	js, err := jetstream.New(jetstream.StoreSource{Store: h.st}, jetstream.Config{PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer js.Close()
	srv := httptest.NewServer(js)
	defer srv.Close()
	conn, br, _, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http")+"/subscribe?cursor=0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	src := wsStream(conn, br)
	want := map[string]int{"commit": 18_616, "identity": 1_391, "account": 1_200}
	total := want["commit"] + want["identity"] + want["account"]
	got := map[string]int{}
	_ = conn.SetReadDeadline(time.Now().Add(hangTimeout))
	var last int64
	for n := 0; n < total; n++ {
		msg, err := wsutil.ReadServerText(src)
		if err != nil {
			t.Fatalf("after %d events %v: %v", n, got, err)
		}
		var ev struct {
			Kind   string `json:"kind"`
			TimeUS int64  `json:"time_us"`
		}
		if err := json.Unmarshal(msg, &ev); err != nil {
			t.Fatalf("event %d: %v", n, err)
		}
		if ev.TimeUS <= last {
			t.Fatalf("event %d: time_us %d not after %d", n, ev.TimeUS, last)
		}
		last = ev.TimeUS
		got[ev.Kind]++
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s events: %d, want %d", k, got[k], n)
		}
	}
}
