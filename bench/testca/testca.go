// Package testca is an in-memory certificate authority for tests and
// benchmarks, so fake PDS hosts (bench/fleet, bench/replay) can serve
// wss:// and https:// and the TLS handshake and record costs appear in
// every end-to-end figure.
//
// New makes a self-signed ECDSA P-256 root and one leaf certificate signed
// by it, valid for "localhost", every name under ".localhost" (RFC 6761
// reserves the whole domain for loopback) and the loopback addresses. The
// keys never leave memory; WriteFile puts the root certificate (public
// part only) in a file for a relay process to trust through its test-only
// setting. A relay that does not trust the root refuses these hosts, as
// it should.
//
// A CA is immutable after New and safe for concurrent use.
package testca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/atrelay/relay/engine/upstream"
)

// validity is how long the certificates are valid from New on: longer
// than any run, short enough that a leaked file is soon worthless.
const validity = 30 * 24 * time.Hour

// FileName is the name WriteFile gives the root certificate in its folder.
const FileName = "test-ca.pem"

// CA is a root certificate and a server certificate it signed.
type CA struct {
	certPEM []byte          // the root, PEM
	pool    *x509.CertPool  // the root alone
	leaf    tls.Certificate // chain: leaf, root
}

// New generates the root and the leaf.
func New() (*CA, error) {
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	root := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "relay test CA"},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew between processes
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, root, root, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	if root, err = x509.ParseCertificate(rootDER); err != nil {
		return nil, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost", "*.localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, root, &leafKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	ca := &CA{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}),
		pool:    x509.NewCertPool(),
		leaf:    tls.Certificate{Certificate: [][]byte{leafDER, rootDER}, PrivateKey: leafKey},
	}
	ca.pool.AddCert(root)
	return ca, nil
}

// serial is a random 128-bit serial number.
func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	return n
}

// CertPEM returns the root certificate, PEM-encoded. The caller must not
// modify it.
func (c *CA) CertPEM() []byte { return c.certPEM }

// Pool returns a pool holding only the root. The caller must not modify it.
func (c *CA) Pool() *x509.CertPool { return c.pool }

// ServerConfig returns a new server configuration presenting the leaf
// (TLS 1.2 and up, as the relay's dialer).
func (c *CA) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.leaf}, MinVersion: tls.VersionTLS12}
}

// ClientConfig returns a new client configuration trusting only the root.
func (c *CA) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: c.pool, MinVersion: tls.VersionTLS12}
}

// WriteFile writes the root certificate to dir/FileName (mode 0644: it is
// public) and returns the path.
func (c *CA) WriteFile(dir string) (string, error) {
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, c.certPEM, 0o644); err != nil {
		return "", fmt.Errorf("testca: %w", err)
	}
	return path, nil
}

// Client returns an HTTP client that trusts only the root and dials
// ".localhost" names on loopback the way the relay's development dialer
// does (upstream.DevDialAddr: Go's resolver would ask DNS), for tests that
// call a TLS host's XRPC endpoints.
func (c *CA) Client() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   c.ClientConfig(),
			ForceAttemptHTTP2: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return d.DialContext(ctx, network, upstream.DevDialAddr(addr))
			},
		},
	}
}
