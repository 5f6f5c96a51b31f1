package identity

import (
	"errors"
	"fmt"
)

// Reason classifies why a DID could not be resolved to a working identity.
// Each reason has its own sentinel error (ErrNotFound, …) and its own
// resolve-error counter label (Reason.String), created at zero when the
// Resolver starts. Negative cache entries remember the reason, so a cached
// failure returns the same sentinel as the original one.
type Reason uint8

// The failure reasons. ReasonNone marks success and is never counted.
const (
	ReasonNone        Reason = iota
	ReasonNotFound           // 404 or 410: unknown or tombstoned DID
	ReasonHTTPStatus         // any other non-200 status (429 and 5xx have their own)
	ReasonTransport          // connection, TLS or read failure
	ReasonTimeout            // the request timeout expired (did:web: the wait for a slot included)
	ReasonTooLarge           // document larger than Config.MaxDocBytes
	ReasonBadJSON            // body is not a JSON DID document
	ReasonIDMismatch         // document id differs from the requested DID
	ReasonNoKey              // no usable #atproto verification method
	ReasonBadKey             // #atproto key present but unparseable or off-curve
	ReasonNoPDS              // no #atproto_pds AtprotoPersonalDataServer service
	ReasonBadPDS             // PDS endpoint is not an http(s)://host[:port] URL
	ReasonRefusedAddr        // the host resolved to a non-public address (engine/netguard)
	ReasonRateLimited        // 429: the server asks us to slow down (transient)
	ReasonServerError        // 5xx: the server failed (transient)
	ReasonUnavailable        // not asked: every recent PLC request failed (transient; plcLimiter's breaker)
	numReasons
)

// Sentinel errors, one per Reason. Lookup wraps them with the DID on a fresh
// failure and returns them bare on a negative-cache hit; use errors.Is.
var (
	ErrNotFound   = errors.New("identity: DID not found or tombstoned")
	ErrHTTPStatus = errors.New("identity: unexpected HTTP status")
	ErrTransport  = errors.New("identity: transport error")
	ErrTimeout    = errors.New("identity: resolution timed out")
	ErrTooLarge   = errors.New("identity: DID document too large")
	ErrBadJSON    = errors.New("identity: malformed DID document")
	ErrIDMismatch = errors.New("identity: DID document id does not match DID")
	ErrNoKey      = errors.New("identity: no #atproto signing key")
	ErrBadKey     = errors.New("identity: invalid #atproto signing key")
	ErrNoPDS      = errors.New("identity: no #atproto_pds service")
	ErrBadPDS     = errors.New("identity: invalid #atproto_pds endpoint")
	ErrRefused    = errors.New("identity: host resolves to a non-public address")
	// ErrRateLimited and ErrServerError wrap ErrHTTPStatus: they are
	// unexpected statuses too, told apart because they are transient.
	// ErrUnavailable (no request sent: the directory failed every recent
	// one) wraps ErrTransport, so callers that retry transport errors
	// retry it too.
	ErrRateLimited = fmt.Errorf("%w: rate limited (429)", ErrHTTPStatus)
	ErrServerError = fmt.Errorf("%w: server error (5xx)", ErrHTTPStatus)
	ErrUnavailable = fmt.Errorf("%w: PLC directory unavailable", ErrTransport)
)

// Errors that involve no resolution attempt and are never cached.
var (
	ErrBadDID            = errors.New("identity: malformed DID")
	ErrUnsupportedMethod = errors.New("identity: unsupported DID method")
	ErrClosed            = errors.New("identity: resolver closed")
)

// String returns the reason's metric label.
func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return "none"
	case ReasonNotFound:
		return "not_found"
	case ReasonHTTPStatus:
		return "http_status"
	case ReasonTransport:
		return "transport"
	case ReasonTimeout:
		return "timeout"
	case ReasonTooLarge:
		return "too_large"
	case ReasonBadJSON:
		return "bad_json"
	case ReasonIDMismatch:
		return "id_mismatch"
	case ReasonNoKey:
		return "no_key"
	case ReasonBadKey:
		return "bad_key"
	case ReasonNoPDS:
		return "no_pds"
	case ReasonBadPDS:
		return "bad_pds"
	case ReasonRefusedAddr:
		return "refused_address"
	case ReasonRateLimited:
		return "rate_limited"
	case ReasonServerError:
		return "server_error"
	case ReasonUnavailable:
		return "unavailable"
	}
	return "unknown"
}

// Err returns the reason's sentinel error (nil for ReasonNone).
func (r Reason) Err() error {
	switch r {
	case ReasonNotFound:
		return ErrNotFound
	case ReasonHTTPStatus:
		return ErrHTTPStatus
	case ReasonTransport:
		return ErrTransport
	case ReasonTimeout:
		return ErrTimeout
	case ReasonTooLarge:
		return ErrTooLarge
	case ReasonBadJSON:
		return ErrBadJSON
	case ReasonIDMismatch:
		return ErrIDMismatch
	case ReasonNoKey:
		return ErrNoKey
	case ReasonBadKey:
		return ErrBadKey
	case ReasonNoPDS:
		return ErrNoPDS
	case ReasonBadPDS:
		return ErrBadPDS
	case ReasonRefusedAddr:
		return ErrRefused
	case ReasonRateLimited:
		return ErrRateLimited
	case ReasonServerError:
		return ErrServerError
	case ReasonUnavailable:
		return ErrUnavailable
	}
	return nil
}

// Transient reports whether the failure says nothing about the identity,
// only about the server at the time: it was rate-limiting, failing,
// unreachable or slow. Asking again later may succeed. Every other reason
// is the answer about the DID (it does not exist, its document is
// unusable) or about our policy (a refused address).
func (r Reason) Transient() bool {
	switch r {
	case ReasonRateLimited, ReasonServerError, ReasonTransport, ReasonTimeout, ReasonUnavailable:
		return true
	}
	return false
}

// IsTransient reports whether err is a resolution failure of a transient
// reason (Reason.Transient), fresh or cached.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var re *ResolveError
	if errors.As(err, &re) {
		return re.Reason.Transient()
	}
	for r := ReasonNone + 1; r < numReasons; r++ {
		if r.Transient() && errors.Is(err, r.Err()) {
			return true
		}
	}
	return false
}

// ResolveError is a fresh resolution failure: the DID, the reason and the
// underlying cause. errors.Is matches the reason's sentinel.
type ResolveError struct {
	DID    string
	Reason Reason
	Cause  error // the transport or parse error, or nil
}

func (e *ResolveError) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%v: %s: %v", e.Reason.Err(), e.DID, e.Cause)
	}
	return fmt.Sprintf("%v: %s", e.Reason.Err(), e.DID)
}

// Is makes errors.Is(err, ErrNotFound) and friends work (and
// errors.Is(err, ErrHTTPStatus) for a 429 or a 5xx).
func (e *ResolveError) Is(target error) bool {
	return target == e.Reason.Err() || (target != nil && errors.Is(e.Reason.Err(), target))
}

// Unwrap exposes the cause (for example a *url.Error).
func (e *ResolveError) Unwrap() error { return e.Cause }

// reasonOf extracts the Reason from an error produced by this package.
func reasonOf(err error) Reason {
	var re *ResolveError
	if errors.As(err, &re) {
		return re.Reason
	}
	// Newest reasons first: ErrRateLimited and ErrServerError wrap
	// ErrHTTPStatus, ErrUnavailable wraps ErrTransport, so they must be
	// tried before those.
	for r := numReasons - 1; r > ReasonNone; r-- {
		if errors.Is(err, r.Err()) {
			return r
		}
	}
	return ReasonTransport
}
