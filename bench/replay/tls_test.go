package replay

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/atrelay/relay/bench/capture"
	"github.com/atrelay/relay/bench/testca"
	"github.com/atrelay/relay/engine/upstream"
	"github.com/gobwas/ws"
)

// TestTLS: with Options.TLS each host is pds-N.localhost:PORT and serves
// the same frames over wss:// and describeServer over https://, to clients
// trusting the test CA only; the PLC documents name the https:// URLs.
func TestTLS(t *testing.T) {
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	c, err := capture.ImportShared(sharedDir())
	if err != nil {
		t.Fatal(err)
	}
	want := originals(t, c)[1]
	f, err := Start(context.Background(), c, Options{TLS: ca})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := f.Replay.Hosts()[1]
	if !h.TLS || !strings.HasPrefix(h.Name, "pds-1.localhost:") || f.Hostnames[1] != h.Name || h.URL() != "https://"+h.Name {
		t.Fatalf("host %+v, hostnames %v", h, f.Hostnames)
	}

	url := "wss://" + h.Name + "/xrpc/com.atproto.sync.subscribeRepos?cursor=0"
	netDial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, upstream.DevDialAddr(addr))
	}
	if conn, _, _, err := (ws.Dialer{NetDial: netDial}).Dial(context.Background(), url); err == nil {
		conn.Close()
		t.Fatal("subscribed without trusting the test CA")
	}
	conn, br, _, err := ws.Dialer{NetDial: netDial, TLSConfig: ca.ClientConfig()}.Dial(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if br == nil {
		br = bufio.NewReaderSize(conn, 64<<10)
	}
	(&client{conn: conn, br: br, buf: make([]byte, 64<<10)}).expectFrames(t, want)

	resp, err := ca.Client().Get(h.URL() + "/xrpc/com.atproto.server.describeServer")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("describeServer over https: %s", resp.Status)
	}
	resp, err = http.Get(f.PLCURL + "/did:plc:2byqcfdosfn3d62gus5ctvts")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"serviceEndpoint":"https://`+f.Hostnames[0]+`"`) {
		t.Fatalf("PLC document not rewritten to https://%s: %s", f.Hostnames[0], body)
	}
}
