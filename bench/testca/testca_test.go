package testca

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestHandshake: a server presenting the leaf is accepted under any
// .localhost name by a client trusting the root (from the file WriteFile
// wrote, as a relay process would load it) and refused by a client
// trusting the system roots or another test CA.
func TestHandshake(t *testing.T) {
	ca, err := New()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ca.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Host)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	path, err := ca.WriteFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(pemBytes); b == nil || b.Type != "CERTIFICATE" || strings.Contains(string(pemBytes), "PRIVATE") {
		t.Fatalf("file is not a lone certificate:\n%s", pemBytes)
	}
	fromFile := x509.NewCertPool()
	if !fromFile.AppendCertsFromPEM(pemBytes) {
		t.Fatal("file does not load")
	}
	for _, name := range []string{"pds-1.localhost", "pds-2999.localhost", "localhost", "127.0.0.1"} {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: fromFile, ServerName: name})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c.Close()
	}
	other, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []*tls.Config{
		{ServerName: "pds-1.localhost"},                        // system roots
		{ServerName: "pds-1.localhost", RootCAs: other.Pool()}, // another CA
		{ServerName: "pds.example.com", RootCAs: ca.Pool()},    // a name the leaf does not cover
		{ServerName: "a.pds-1.localhost", RootCAs: ca.Pool()},  // wildcards cover one label
	} {
		if c, err := tls.Dial("tcp", ln.Addr().String(), cfg); err == nil {
			c.Close()
			t.Fatalf("%s accepted with %v", cfg.ServerName, cfg.RootCAs)
		}
	}

	// Client dials the .localhost name on loopback and verifies it.
	resp, err := ca.Client().Get("https://pds-5.localhost:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "pds-5.localhost:"+port {
		t.Fatalf("served Host %q", body)
	}
}
