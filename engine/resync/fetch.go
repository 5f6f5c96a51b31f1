package resync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/atrelay/relay/engine/atproto/syntax"
	"github.com/atrelay/relay/engine/netguard"
	"github.com/valyala/bytebufferpool"
)

// Errors of a fetch, one per reason. Result.Err wraps them.
var (
	ErrRepoNotFound    = errors.New("resync: PDS has no such repository")
	ErrRepoDeactivated = errors.New("resync: PDS reports the repository deactivated")
	ErrRepoTakendown   = errors.New("resync: PDS reports the repository taken down")
	ErrRepoSuspended   = errors.New("resync: PDS reports the repository suspended")
	ErrHTTPStatus      = errors.New("resync: unexpected HTTP status from getRepo")
	ErrTransport       = errors.New("resync: getRepo request failed")
	ErrTooLarge        = errors.New("resync: repository larger than MaxRepoBytes")
	ErrInsecureHost    = errors.New("resync: development PDS host without AllowInsecureHosts")
	// ErrBlockedAddress: the PDS resolved to an address the resync client
	// may not dial (netguard's public-only policy).
	ErrBlockedAddress  = netguard.ErrRefused
	ErrContentEncoding = errors.New("resync: getRepo body has a Content-Encoding (only identity is accepted)")
)

// maxErrorBody bounds how much of a non-200 answer is read for its XRPC
// error name; reference PDS error bodies are a few dozen bytes.
const maxErrorBody = 4 << 10

// maxResponseHeaderBytes bounds a getRepo answer's headers (net/http's
// default is 1 MiB); a PDS sends a few hundred bytes.
const maxResponseHeaderBytes = 64 << 10

// baseURL returns the scheme and authority getRepo is fetched from for a
// normalized PDS host (identity.NormalizePDSHost). Plaintext development
// hosts (syntax.PlaintextHost: localhost and loopback addresses) use
// http:// and only when allowInsecure; every other host uses https://.
func baseURL(host string, allowInsecure bool) (string, error) {
	if syntax.PlaintextHost(host) {
		if !allowInsecure {
			return "", fmt.Errorf("%w: %q", ErrInsecureHost, host)
		}
		return "http://" + host, nil
	}
	return "https://" + host, nil
}

// newClient builds the default fetch client: bounded dial, TLS and header
// waits (the whole attempt is bounded by FetchTimeout through its
// context), bounded response headers, no transparent decompression (a
// gzip body would be inflated outside every limit), no redirects (a PDS
// serves getRepo itself; following a redirect would let a DID document
// point the relay anywhere), and unless
// allowInsecure a dialer that refuses non-public addresses, because the
// PDS host comes from a DID document anyone can write.
func newClient(allowInsecure bool) *http.Client {
	policy := netguard.Policy{AllowLoopback: allowInsecure}
	d := &net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second, Control: policy.Control}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            d.DialContext,
			ForceAttemptHTTP2:      true,
			MaxIdleConns:           64,
			MaxIdleConnsPerHost:    4,
			IdleConnTimeout:        90 * time.Second,
			TLSHandshakeTimeout:    DefaultDialTimeout,
			ResponseHeaderTimeout:  30 * time.Second,
			MaxResponseHeaderBytes: maxResponseHeaderBytes,
			DisableCompression:     true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// fetch performs one getRepo attempt. On success it returns the CAR in a
// buffer from bufs that the caller must Put, reserved in w.mem (which the
// caller releases). On failure it returns the outcome, whether a retry may
// help, and the error; w.mem may still hold the first buffer's reservation.
func (r *Resyncer) fetch(ctx context.Context, w *worker, base, did string) (*bytebufferpool.ByteBuffer, Outcome, bool, error) {
	// The first buffer is reserved before the request is sent, so a fetch
	// waiting for the share holds no connection.
	if err := w.mem.growTo(ctx, min(firstReadSize, r.cfg.MaxRepoBytes+1)); err != nil {
		o, retry := memOutcome(err)
		return nil, o, retry, err
	}
	actx, cancel := context.WithTimeout(ctx, r.cfg.FetchTimeout)
	defer cancel()
	// The read guard cancels with ErrSlowBody as the cause.
	gctx, gcancel := context.WithCancelCause(actx)
	defer gcancel(nil)
	u := base + "/xrpc/com.atproto.sync.getRepo?did=" + url.QueryEscape(did)
	req, err := http.NewRequestWithContext(gctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, FetchError, false, fmt.Errorf("%w: %w", ErrTransport, err)
	}
	req.Header.Set("Accept", "application/vnd.ipld.car")
	// Set explicitly, so no http.Transport (a caller's client included)
	// asks for gzip and inflates behind our back: a few hundred KiB of
	// gzip on the wire can inflate to gigabytes.
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("User-Agent", r.cfg.UserAgent)
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, FetchError, !errors.Is(err, ErrBlockedAddress), fmt.Errorf("%w: %w", ErrTransport, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		o, retry, err := classifyStatus(resp.StatusCode, body)
		return nil, o, retry, err
	}
	if ce := resp.Header.Get("Content-Encoding"); (ce != "" && !strings.EqualFold(ce, "identity")) || resp.Uncompressed {
		return nil, FetchError, false, fmt.Errorf("%w: %.40q", ErrContentEncoding, ce)
	}
	if resp.ContentLength > r.cfg.MaxRepoBytes {
		return nil, TooLarge, false, fmt.Errorf("%w: Content-Length %d", ErrTooLarge, resp.ContentLength)
	}
	if !w.mem.s.fits(resp.ContentLength) {
		return nil, TooLarge, false, fmt.Errorf("%w: Content-Length %d", ErrRepoMemory, resp.ContentLength)
	}
	g := startReadGuard(r.cfg.MinRateWindow, r.cfg.MinReadBytesPerSecond, gcancel)
	buf, err := readBounded(gctx, r.cfg.Buffers, w.mem, g, resp.Body, resp.ContentLength, r.cfg.MaxRepoBytes)
	g.stop()
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, TooLarge, false, err
		}
		if errors.Is(err, ErrRepoMemory) || errors.Is(err, ErrMemoryBusy) {
			o, retry := memOutcome(err)
			return nil, o, retry, err
		}
		if cause := context.Cause(gctx); errors.Is(cause, ErrSlowBody) {
			err = cause
		}
		return nil, FetchError, true, fmt.Errorf("%w: reading body: %w", ErrTransport, err)
	}
	r.m.fetchedBytes.Add(len(buf.B))
	return buf, OK, false, nil
}

// memOutcome maps an error of the memory share to an outcome and whether
// a retry may help: a repository the whole share cannot hold is too
// large; losing the share to concurrent resyncs (ErrMemoryBusy) or a
// cancellation while waiting for it is a fetch error worth retrying.
func memOutcome(err error) (Outcome, bool) {
	if errors.Is(err, ErrRepoMemory) {
		return TooLarge, false
	}
	return FetchError, true
}

// xrpcError is the body of an XRPC error answer.
type xrpcError struct {
	Error string `json:"error"`
}

// classifyStatus maps a non-200 getRepo answer to its outcome: the
// lexicon's error names first (whatever the status, since PDS versions
// differ between 400 and 404), then 404 as not found, 429 and 5xx as
// retryable fetch errors, anything else as a final fetch error.
func classifyStatus(code int, body []byte) (Outcome, bool, error) {
	var xe xrpcError
	if json.Unmarshal(body, &xe) == nil {
		switch xe.Error {
		case "RepoNotFound":
			return NotFound, false, fmt.Errorf("%w (%d RepoNotFound)", ErrRepoNotFound, code)
		case "RepoDeactivated":
			return Deactivated, false, fmt.Errorf("%w (%d)", ErrRepoDeactivated, code)
		case "RepoTakendown":
			return Takendown, false, fmt.Errorf("%w (%d)", ErrRepoTakendown, code)
		case "RepoSuspended":
			return Suspended, false, fmt.Errorf("%w (%d)", ErrRepoSuspended, code)
		}
	}
	switch {
	case code == http.StatusNotFound:
		return NotFound, false, fmt.Errorf("%w (404)", ErrRepoNotFound)
	case code == http.StatusTooManyRequests || code >= 500:
		return FetchError, true, fmt.Errorf("%w: %d", ErrHTTPStatus, code)
	}
	return FetchError, false, fmt.Errorf("%w: %d", ErrHTTPStatus, code)
}
