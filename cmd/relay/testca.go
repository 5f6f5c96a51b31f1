package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/atrelay/relay/engine/netguard"
	"github.com/atrelay/relay/engine/upstream"
)

// applyTestCA makes the upstream dialer, the describeServer probe and the
// resync fetcher trust RELAY_TEST_CA_FILE besides the system roots, and
// dial names under .localhost on loopback, so a test fleet can serve
// wss:// and https:// as pds-N.localhost:PORT. Tests only: it needs
// --allow-insecure-hosts.
func applyTestCA(s *Settings) error {
	if s.TestCAFile == "" {
		return nil
	}
	if !s.AllowInsecureHosts {
		return errors.New("RELAY_TEST_CA_FILE needs RELAY_ALLOW_INSECURE_HOSTS (it is for tests only)")
	}
	pem, err := os.ReadFile(s.TestCAFile)
	if err != nil {
		return fmt.Errorf("RELAY_TEST_CA_FILE: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("RELAY_TEST_CA_FILE %s: no PEM certificate", s.TestCAFile)
	}
	tlsCfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	s.Relay.Upstream.TLSConfig = tlsCfg
	s.Resync.HTTPClient = devClient(tlsCfg, 0)
	s.testHTTP = devClient(tlsCfg, 10*time.Second)
	return nil
}

// devClient is a netguard client (loopback allowed, as with the
// development switch) that trusts tlsCfg and dials .localhost names on
// 127.0.0.1. timeout 0: none (the caller's context bounds requests).
func devClient(tlsCfg *tls.Config, timeout time.Duration) *http.Client {
	c := netguard.NewClient(netguard.Options{Policy: netguard.Policy{AllowLoopback: true}})
	t := c.Transport.(*http.Transport)
	t.TLSClientConfig = tlsCfg.Clone()
	dial := t.DialContext
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dial(ctx, network, upstream.DevDialAddr(addr))
	}
	c.Timeout = timeout
	return c
}
