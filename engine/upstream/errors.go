package upstream

import (
	"errors"
	"strconv"

	"github.com/atrelay/relay/engine/label"
)

// Reason is why a connection attempt failed or an established connection
// ended. The set is closed: every value has a metric label (String) and a
// counter that exists from the start at zero.
type Reason uint8

// The closed set of reasons. Values index counter arrays; add new ones only
// before numReasons and give each a label in reasonLabels.
const (
	ReasonDial              Reason = iota // TCP connect failed, or the address was refused (SSRF)
	ReasonHandshake                       // HTTP upgrade failed: non-101 status, bad headers, I/O error
	ReasonTLS                             // TLS handshake or record layer failed
	ReasonProtocol                        // WebSocket protocol violation, including text frames
	ReasonOversize                        // a message exceeded Config.MaxFrameBytes
	ReasonTimeout                         // no answer to our ping within PongTimeout, or the peer stopped reading (ErrWriteStalled)
	ReasonClosedByPeer                    // close frame, EOF or reset from the peer
	ReasonRelayLoop                       // the peer says it is a relay (Server header contains "atproto-relay")
	ReasonHandshakeTooLarge               // upgrade response head over Config.MaxHandshakeBytes or MaxHandshakeHeaders, or TLS handshake over 10 KiB (maxTLSHandshakeBytes)
	ReasonMessageTimeout                  // a message took longer than Config.MessageTimeout from its first byte
	ReasonPingFlood                       // the peer pinged faster than Config.MaxPingsPerSecond
	ReasonErrorFrame                      // the peer sent an error frame (op -1), which ends the stream
	numReasons
)

var reasonLabels = [numReasons]string{
	ReasonDial:         "dial",
	ReasonHandshake:    "handshake",
	ReasonTLS:          "tls",
	ReasonProtocol:     "protocol",
	ReasonOversize:     "oversize",
	ReasonTimeout:      "timeout",
	ReasonClosedByPeer: "closed_by_peer",
	ReasonRelayLoop:    "relay_loop",

	ReasonHandshakeTooLarge: "handshake_too_large",
	ReasonMessageTimeout:    "message_timeout",
	ReasonPingFlood:         "ping_flood",
	ReasonErrorFrame:        "error_frame",
}

// String returns the reason's metric label ("unknown" outside the set).
func (r Reason) String() string { return label.Of(reasonLabels[:], r) }

// Errors reported through Config.OnDisconnect and returned by Add. Each
// failure has its own value so callers compare with errors.Is, never by text.
var (
	// ErrForbiddenAddress: the dialed IP is loopback, private, link-local,
	// unspecified, multicast or otherwise non-public, and
	// Config.AllowInsecureHosts is off. It is checked on the address actually
	// dialed (net.Dialer.Control), so DNS answers cannot smuggle one in.
	ErrForbiddenAddress = errors.New("upstream: refusing to dial a non-public address")
	// ErrInsecureNotAllowed: ws://, an explicit port, localhost or a
	// loopback address was asked for without Config.AllowInsecureHosts.
	ErrInsecureNotAllowed = errors.New("upstream: insecure host (ws:// or explicit port) needs AllowInsecureHosts")
	// ErrInvalidHostname: the hostname fails syntax.NormalizeHost (the
	// wrapped syntax reason says which rule).
	ErrInvalidHostname = errors.New("upstream: invalid hostname")
	// ErrRelayLoop: the upgrade response's Server header contains
	// "atproto-relay"; subscribing would make a loop of relays.
	ErrRelayLoop = errors.New("upstream: peer is an atproto relay (loop prevention)")
	// ErrOversize: a message is larger than Config.MaxFrameBytes.
	ErrOversize = errors.New("upstream: frame exceeds the size limit")
	// ErrTextFrame: the peer sent a text message; the firehose is binary only.
	ErrTextFrame = errors.New("upstream: text frame on a binary stream")
	// ErrPongTimeout: the connection was silent past IdlePing and our ping
	// got no answer within PongTimeout.
	ErrPongTimeout = errors.New("upstream: no answer to ping")
	// ErrPeerClosed: the peer sent a close frame.
	ErrPeerClosed = errors.New("upstream: peer sent close")
	// ErrHandshakeTooLarge: the upgrade response's status line and headers
	// exceed Config.MaxHandshakeBytes, or it has more than
	// Config.MaxHandshakeHeaders header lines.
	ErrHandshakeTooLarge = errors.New("upstream: upgrade response head too large")
	// ErrTLSHandshakeTooLarge: the server's TLS handshake (its certificate
	// chain, mostly) needed more than maxTLSHandshakeBytes.
	ErrTLSHandshakeTooLarge = errors.New("upstream: TLS handshake from the server too large")
	// ErrMessageTimeout: a message (or control frame) was still incomplete
	// Config.MessageTimeout after its first byte arrived.
	ErrMessageTimeout = errors.New("upstream: message not completed in time")
	// ErrPingFlood: the peer sent pings faster than Config.MaxPingsPerSecond.
	ErrPingFlood = errors.New("upstream: ping flood")
	// ErrErrorFrame: the peer sent an error frame (header op -1). The frame
	// reached the Sink; the stream ends after it (spec: the server closes).
	ErrErrorFrame = errors.New("upstream: peer sent an error frame")
	// ErrWriteStalled: a control frame we owe the peer (pong, ping, close)
	// could not be written for Config.WriteTimeout, or more than a few of
	// them piled up: the peer does not read its socket.
	ErrWriteStalled = errors.New("upstream: peer does not read its socket")
	// ErrLoopClosed: the Loop was closed.
	ErrLoopClosed = errors.New("upstream: loop closed")
)

// StatusError is the upgrade response status when it is not 101.
type StatusError struct {
	Status int // HTTP status code of the upgrade response
}

// Error implements error.
func (e *StatusError) Error() string {
	return "upstream: upgrade refused with HTTP status " + strconv.Itoa(e.Status)
}

// ProtocolError wraps a WebSocket framing violation found while reading
// (reserved opcode, masked server frame, bad fragmentation, oversized or
// fragmented control frame, non-zero RSV bits).
type ProtocolError struct {
	Err error // the gobwas/ws protocol error or a framing error of ours
}

// Error implements error.
func (e *ProtocolError) Error() string { return "upstream: protocol error: " + e.Err.Error() }

// Unwrap returns the underlying violation.
func (e *ProtocolError) Unwrap() error { return e.Err }

// wouldBlockError is what a nonblocking read returns when the socket is
// empty. It claims Timeout and Temporary so crypto/tls treats it as a
// retryable condition and does not poison the connection (crypto/tls only
// records non-temporary net.Errors as permanent).
type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "upstream: read would block" }
func (wouldBlockError) Timeout() bool   { return true }
func (wouldBlockError) Temporary() bool { return true }

// errWouldBlock is the single immutable value of wouldBlockError, so
// returning it never allocates.
var errWouldBlock error = wouldBlockError{}
