package upstream

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrelay/relay/internal/testutil"
	"github.com/gobwas/ws"
)

// hostCostServerEnv makes the test binary serve TestHostBytes's hosts (see
// TestMain) from another process, so the servers' connections, TLS state
// and goroutines stay out of the heap being measured.
const hostCostServerEnv = "UPSTREAM_TEST_HOST_COST_SERVER"

// The script every hostCost connection runs after the upgrade: one message
// of exactly three full TLS records (16 KiB of plaintext each, so
// crypto/tls's record buffer reaches its largest), then a small message
// the Sink pauses at, then one that is left unparsed in the host's pending
// buffer: the 4 KiB class a paused host keeps at most under
// MaxPendingBytes.
const (
	costBigFrame     = 3 * 16 << 10 // whole frame, header included
	costPauseFrame   = 100          // payload
	costPendingFrame = 3800         // payload
)

// costScript is what a hostCost server writes after the upgrade.
func costScript() []byte {
	b := frameBytes(ws.OpBinary, true, payloadN(0, costBigFrame-4)) // 126: 2-byte length
	b = append(b, frameBytes(ws.OpBinary, true, payloadN(1, costPauseFrame))...)
	return append(b, frameBytes(ws.OpBinary, true, payloadN(2, costPendingFrame))...)
}

// runHostCostServer serves wss:// and ws:// on two loopback ports. Each TLS
// host name (its SNI) gets its own leaf certificate, as distinct PDS hosts
// have, in a chain of costChainBytes (the largest whose handshake fits
// maxTLSHandshakeBytes, the worst case a host can make us keep), or as
// small as a public CA's for names starting with costTypicalPrefix. It prints
// the two ports and the root certificate (DER, base64), answers every
// connection with costScript after a pause (so the upgrade response is
// read alone), holds the connections, and exits when stdin closes.
func runHostCostServer() {
	ca, err := newTestChain()
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	cfg := &tls.Config{GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if strings.HasPrefix(hi.ServerName, costTypicalPrefix) {
			return ca.leaf(hi.ServerName, 0)
		}
		return ca.leaf(hi.ServerName, costChainBytes)
	}}
	cfg.DynamicRecordSizingDisabled = true // full-size records from the first byte
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	script := costScript()
	serve := func(c net.Conn) {
		if _, err := (ws.Upgrader{}).Upgrade(c); err != nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
		_, _ = c.Write(script)
		_, _ = io.Copy(io.Discard, c) // holds c until the client goes
		c.Close()
	}
	go acceptAll(tlsLn, func(c net.Conn) { serve(tls.Server(c, cfg)) })
	go acceptAll(plainLn, serve)
	fmt.Println(tlsLn.Addr().(*net.TCPAddr).Port, plainLn.Addr().(*net.TCPAddr).Port,
		base64.StdEncoding.EncodeToString(ca.root.Raw))
	// The test kills this process; should it die first, follow it.
	for parent := os.Getppid(); os.Getppid() == parent; {
		time.Sleep(time.Second)
	}
}

// acceptAll runs handle on a goroutine of its own for every connection ln
// accepts, until ln fails.
func acceptAll(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go handle(c)
	}
}

// costChainBytes is the chain (leaf and intermediate, DER) of
// TestHostBytes's hosts: maxTLSHandshakeBytes less room for the rest of
// the server's flight (about 1.6 KB with go1.26: ServerHello with an
// X25519MLKEM768 key share, CertificateVerify, Finished, a session ticket).
const costChainBytes = maxTLSHandshakeBytes - 2<<10

// costTypicalPrefix starts the names of hosts with an unpadded chain.
const costTypicalPrefix = "typical-"

// testChain is a certificate authority shaped like a public CA: a root, an
// intermediate that signs leaves, RSA 2048 keys. Leaves share one key.
type testChain struct {
	root, inter       *x509.Certificate
	interKey, leafKey *rsa.PrivateKey

	mu     sync.Mutex
	leaves map[string]*tls.Certificate // by name
}

func newTestChain() (*testChain, error) {
	c := &testChain{leaves: map[string]*tls.Certificate{}}
	rootKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if c.interKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if c.leafKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if c.root, err = signCert("relay test root", 0, &rootKey.PublicKey, nil, rootKey); err != nil {
		return nil, err
	}
	if c.inter, err = signCert("relay test intermediate", 0, &c.interKey.PublicKey, c.root, rootKey); err != nil {
		return nil, err
	}
	return c, nil
}

// leaf returns name's certificate, made on first use with its chain
// (leaf and intermediate DER) padded to chainBytes, or as small as it
// gets (about 2.1 KB).
func (c *testChain) leaf(name string, chainBytes int) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.leaves[name]; l != nil {
		return l, nil
	}
	// Where a public CA's leaf carries its two signed certificate
	// timestamps (RFC 6962), about 240 bytes each; padded to size.
	pad := 480
	var leaf *x509.Certificate
	for range 3 { // DER length prefixes grow with the padding
		var err error
		if leaf, err = signCert(name, pad, &c.leafKey.PublicKey, c.inter, c.interKey); err != nil {
			return nil, err
		}
		if n := len(leaf.Raw) + len(c.inter.Raw); n < chainBytes {
			pad += chainBytes - n
		} else if n > chainBytes && pad > 480 {
			pad -= min(pad-480, n-chainBytes)
		} else {
			break
		}
	}
	l := &tls.Certificate{Certificate: [][]byte{leaf.Raw, c.inter.Raw}, PrivateKey: c.leafKey}
	c.leaves[name] = l
	return l, nil
}

// signCert makes a certificate for name and pub signed by parent (self-
// signed when nil) with parentKey: a CA certificate when pad is 0, else a
// server leaf with a pad-byte extension.
func signCert(name string, pad int, pub *rsa.PublicKey, parent *x509.Certificate, parentKey *rsa.PrivateKey) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	if pad == 0 {
		tmpl.KeyUsage = x509.KeyUsageCertSign
		tmpl.BasicConstraintsValid, tmpl.IsCA = true, true
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{name}
		sct := asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}
		tmpl.ExtraExtensions = []pkix.Extension{{Id: sct, Value: make([]byte, pad)}}
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// startHostCostServer runs runHostCostServer in a child process and
// returns its TLS and plain ports and a pool trusting its root.
func startHostCostServer(t *testing.T) (tlsPort, plainPort string, roots *x509.CertPool) {
	cmd, stdout := testutil.StartChild(t, "", hostCostServerEnv+"=1")
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 3 {
		t.Fatalf("host cost server: %q %v", line, err)
	}
	der, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(root)
	return f[0], f[1], roots
}

// TestHostBytes proves HostBytesTLS and HostBytesPlain: it subscribes
// costHosts hosts over TLS with chains that fill maxTLSHandshakeBytes, then
// with a public CA's chain (for the record), then over plain ws, each
// sending costScript (so crypto/tls's record buffer reaches its largest
// and each host ends paused with a pending buffer), and checks the live
// heap each host adds against the constant less what the test does not
// exercise (hostOwedBytes).
func TestHostBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("subscribes 600 hosts")
	}
	if raceEnabled {
		t.Skip("the race detector's shadow memory makes heap figures meaningless")
	}
	tlsPort, plainPort, roots := startHostCostServer(t)
	for _, tc := range []struct {
		name, prefix, port string
		tls                bool
		limit              int64
	}{
		{"tls", "pds-", tlsPort, true, HostBytesTLS},
		{"tls-typical-chain", costTypicalPrefix, tlsPort, true, HostBytesTLS},
		{"plain", "pds-", plainPort, false, HostBytesPlain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			per := hostCost(t, tc.prefix, tc.port, tc.tls, roots)
			t.Logf("%s: %d B (%.1f KiB) per host; the constant is %d B (%.1f KiB), %d B of it not exercised here",
				tc.name, per, float64(per)/1024, tc.limit, float64(tc.limit)/1024, hostOwedBytes)
			if per > tc.limit-hostOwedBytes {
				t.Fatalf("a host costs %d B > the constant less hostOwedBytes = %d B", per, tc.limit-hostOwedBytes)
			}
		})
	}
}

// costHosts is how many hosts each TestHostBytes run subscribes: enough
// that the loop's fixed costs and GC noise fall below a few bytes per host.
const costHosts = 200

// hostCost subscribes costHosts hosts named prefix-N.localhost:port and
// returns the live heap each adds, over a baseline taken with the loop
// running and warmed up by a few hosts already gone.
func hostCost(t *testing.T, prefix, port string, useTLS bool, roots *x509.CertPool) int64 {
	var paused atomic.Int64
	cfg := Config{
		Sink: func(h *Host, f Frame) bool {
			f.Release()
			if h.Frames() == 2 { // counted before the Sink is called
				paused.Add(1)
				return false
			}
			return true
		},
		AllowInsecureHosts: true,
		TLSConfig:          &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		Readers:            2,
		MaxConcurrentDials: 16,
	}
	l := newTestLoop(t, cfg)
	add := func(first, n int) []*Host {
		var hs []*Host
		for i := first; i < first+n; i++ {
			h, err := l.Add(fmt.Sprintf("%s%d.localhost:%s", prefix, i, port), HostOptions{Insecure: !useTLS})
			if err != nil {
				t.Fatal(err)
			}
			hs = append(hs, h)
		}
		want := paused.Load() + int64(n)
		waitFor(t, fmt.Sprintf("%d hosts paused", n), func() bool { return paused.Load() == want })
		return hs
	}

	// Warm up: the first connections fill the buffer pool, the Loop's
	// slices and crypto/tls's one-time state.
	for _, h := range add(0, 8) {
		l.Remove(h)
	}
	waitFor(t, "warm-up hosts gone", func() bool { return l.Hosts() == 0 && l.connected.Load() == 0 })
	base := liveHeap()
	hs := add(8, costHosts)
	after := liveHeap()
	flight := maxTLSHandshakeBytes
	for _, h := range hs {
		if !h.Paused() || h.Frames() != 2 {
			t.Fatalf("host %s: paused %v after %d frames, want paused after 2", h.Name(), h.Paused(), h.Frames())
		}
		h.mu.Lock()
		flight = min(flight, maxTLSHandshakeBytes-h.conn.nb.flightLeft)
		h.mu.Unlock()
	}
	if useTLS && prefix != costTypicalPrefix && flight < maxTLSHandshakeBytes-1<<10 {
		t.Fatalf("a TLS handshake read %d bytes, want the worst case: near maxTLSHandshakeBytes (%d)", flight, maxTLSHandshakeBytes)
	}
	if got, want := l.pending.Load(), int64(costHosts)*capFor(smallReadBytes); got > want {
		t.Fatalf("pending %d B for %d hosts, want at most %d", got, costHosts, want)
	}
	if useTLS {
		t.Logf("TLS handshakes read at least %d B", flight)
	}
	t.Logf("%d hosts: live heap %d → %d KiB, pending buffers %d KiB", costHosts, base>>10, after>>10, l.pending.Load()>>10)
	runtime.KeepAlive(hs)
	return (after - base) / costHosts
}

// liveHeap is the heap in use once collections stop freeing anything:
// crypto/tls's certificate cache drops entries in cleanups that run after
// a collection, so one GC leaves the last run's certificates counted.
func liveHeap() int64 {
	var ms runtime.MemStats
	prev := int64(-1)
	for range 20 {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		if cur := int64(ms.HeapAlloc); prev >= 0 && max(cur-prev, prev-cur) < 4<<10 {
			return cur
		} else {
			prev = cur
		}
		time.Sleep(10 * time.Millisecond)
	}
	return prev
}

// TestTLSHandshakeTooLarge: a server whose certificate chain does not fit
// maxTLSHandshakeBytes is refused (reason handshake_too_large) before
// crypto/tls keeps any of it; one that fits connects.
func TestTLSHandshakeTooLarge(t *testing.T) {
	ca, err := newTestChain()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if strings.HasPrefix(hi.ServerName, "fat") {
			return ca.leaf(hi.ServerName, maxTLSHandshakeBytes)
		}
		return ca.leaf(hi.ServerName, costChainBytes)
	}}
	addr := testutil.TCPServer(t, func(c net.Conn) {
		sc := tls.Server(c, cfg)
		if _, err := (ws.Upgrader{}).Upgrade(sc); err != nil {
			return
		}
		_, _ = sc.Write(frameBytes(ws.OpBinary, true, payloadN(0, 10)))
		_, _ = io.Copy(io.Discard, sc)
	})
	port := strconv.Itoa(addr.Port)
	roots := x509.NewCertPool()
	roots.AddCert(ca.root)
	c := newCollector()
	var d disconnects
	lcfg := testConfig(c.sink)
	lcfg.TLSConfig = &tls.Config{RootCAs: roots}
	lcfg.OnDisconnect = d.hook
	l := newTestLoop(t, lcfg)
	fat, err := l.Add("fat.localhost:"+port, HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ok, err := l.Add("ok.localhost:"+port, HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fat chain refused", func() bool { return fat.Errors(ReasonHandshakeTooLarge) > 0 })
	waitFor(t, "a message through the chain that fits", func() bool { return ok.Frames() == 1 })
	if fat.Frames() != 0 || fat.Errors(ReasonTLS) != 0 {
		t.Fatalf("fat chain: %d frames, %d TLS errors", fat.Frames(), fat.Errors(ReasonTLS))
	}
	_, errs := d.snapshot()
	if len(errs) == 0 || !errors.Is(errs[0], ErrTLSHandshakeTooLarge) {
		t.Fatalf("disconnect errors %v, want ErrTLSHandshakeTooLarge", errs)
	}
}
