package jetstream

import (
	"bufio"
	"bytes"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/internal/streamtest"
	"github.com/atrelay/relay/internal/testutil"
)

// upgradeRefused sends a WebSocket upgrade request for /subscribe over a
// real socket and returns its status and Retry-After; an accepted upgrade
// fails the test.
func (ts *testServer) upgradeRefused(t *testing.T, hdr http.Header) (int, string) {
	t.Helper()
	resp, _ := testutil.UpgradeRefused(t, ts.hs.Client(), ts.hs.URL+"/subscribe", hdr)
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// counter returns the value of the series name on set, 0 when absent.
func counter(t *testing.T, set *metrics.Set, name string) uint64 {
	t.Helper()
	var b bytes.Buffer
	set.WritePrometheus(&b)
	sc := bufio.NewScanner(&b)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return n
		}
	}
	return 0
}

const perIPRefusals = `relay_jetstream_subscribers_rejected_total{reason="per_ip"}`

// TestSubscriberCapPerIP opens MaxSubscribersPerIP subscribers from
// 127.0.0.1: one more is refused with 429 before the upgrade, a forged
// X-Forwarded-For from an untrusted peer changes nothing, and both are
// counted; once one subscriber leaves, a new one is admitted and served.
func TestSubscriberCapPerIP(t *testing.T) {
	checkNoLeak(t)
	const perIP = 3
	set := metrics.NewSet()
	ts := startServer(t, newFakeSource(), Config{MaxSubscribersPerIP: perIP, MaxSubscribers: 100, Metrics: set})
	var cs []*client
	for range perIP {
		cs = append(cs, ts.dial(t, ""))
	}
	ts.waitLive(t, perIP)
	for _, hdr := range []http.Header{nil, {"X-Forwarded-For": {"203.0.113.9"}}} {
		if status, retry := ts.upgradeRefused(t, hdr); status != http.StatusTooManyRequests || retry == "" {
			t.Fatalf("subscriber %d from one address: HTTP %d, Retry-After %q; want 429 and a Retry-After", perIP+1, status, retry)
		}
	}
	if n := counter(t, set, perIPRefusals); n != 2 {
		t.Fatalf("%s = %d, want 2", perIPRefusals, n)
	}
	if n := counter(t, set, "relay_jetstream_rejected_total"); n != 0 {
		t.Fatalf("relay_jetstream_rejected_total = %d, want 0", n)
	}

	_ = cs[0].conn.Close()
	waitSlots(t, ts, perIP-1)
	c := ts.dial(t, "")
	ts.waitLive(t, perIP)
	ts.appendAll(t, baseMS, post(alice, "p"))
	c.expectKeys("commit " + alice + " app.bsky.feed.post/p create")
}

// TestSubscriberCapTrustedProxy: behind a trusted proxy each
// X-Forwarded-For client has its own cap.
func TestSubscriberCapTrustedProxy(t *testing.T) {
	checkNoLeak(t)
	set := metrics.NewSet()
	ts := startServer(t, newFakeSource(), Config{MaxSubscribersPerIP: 1, Metrics: set,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	for _, client := range []string{"203.0.113.1", "203.0.113.2"} {
		ts.dialHeader(t, "", http.Header{"X-Forwarded-For": {client}})
	}
	ts.waitLive(t, 2)
	if status, _ := ts.upgradeRefused(t, http.Header{"X-Forwarded-For": {"203.0.113.1"}}); status != http.StatusTooManyRequests {
		t.Fatalf("second subscriber of 203.0.113.1: HTTP %d, want 429", status)
	}
	if n := counter(t, set, perIPRefusals); n != 1 {
		t.Fatalf("%s = %d, want 1", perIPRefusals, n)
	}
}

// TestDefaultMaxSubscribersPerIP: a client may open as many Jetstream
// subscribers as firehose consumers.
func TestDefaultMaxSubscribersPerIP(t *testing.T) {
	if DefaultMaxSubscribersPerIP != firehose.DefaultMaxConsumersPerIP {
		t.Fatalf("DefaultMaxSubscribersPerIP = %d, firehose.DefaultMaxConsumersPerIP = %d", DefaultMaxSubscribersPerIP, firehose.DefaultMaxConsumersPerIP)
	}
	if got := (Config{}).withDefaults().MaxSubscribersPerIP; got != DefaultMaxSubscribersPerIP {
		t.Fatalf("default MaxSubscribersPerIP = %d", got)
	}
}

// waitSlots waits until the server holds n connection slots.
func waitSlots(t *testing.T, ts *testServer, n int) {
	t.Helper()
	streamtest.WaitFor(t, strconv.Itoa(n)+" connection slots", func() bool { return ts.adm.Held() == n })
}
