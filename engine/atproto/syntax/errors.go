package syntax

// Error is one syntax failure reason. Every reason is a distinct constant, so
// callers compare with == or errors.Is, and can use the text as a metric label
// without allocating.
type Error string

// Error returns the reason text.
func (e Error) Error() string { return string(e) }

// DID failure reasons.
const (
	ErrDIDEmpty             Error = "syntax: DID is empty"
	ErrDIDTooLong           Error = "syntax: DID longer than 2048 bytes"
	ErrDIDPrefix            Error = "syntax: DID does not start with \"did:\""
	ErrDIDMethod            Error = "syntax: DID method is not [a-z]+ followed by ':'"
	ErrDIDIdentifierEmpty   Error = "syntax: DID method-specific identifier is empty"
	ErrDIDChar              Error = "syntax: DID contains a character outside [A-Za-z0-9._:%-]"
	ErrDIDTrailing          Error = "syntax: DID ends with ':' or '%'"
	ErrDIDPercent           Error = "syntax: DID '%' is not followed by two hex digits"
	ErrDIDUnsupportedMethod Error = "syntax: DID method is neither plc nor web"
	ErrDIDPLCIdentifier     Error = "syntax: did:plc identifier is not 24 chars of [a-z2-7]"
	ErrDIDWebHost           Error = "syntax: did:web identifier is not a lowercase hostname"
)

// Handle failure reasons.
const (
	ErrHandleEmpty         Error = "syntax: handle is empty"
	ErrHandleTooLong       Error = "syntax: handle longer than 253 bytes"
	ErrHandleChar          Error = "syntax: handle contains a character outside [A-Za-z0-9.-]"
	ErrHandleEmptyLabel    Error = "syntax: handle has an empty label"
	ErrHandleLabelTooLong  Error = "syntax: handle label longer than 63 bytes"
	ErrHandleLabelHyphen   Error = "syntax: handle label starts or ends with '-'"
	ErrHandleTooFewLabels  Error = "syntax: handle has fewer than two labels"
	ErrHandleTLDLeadsDigit Error = "syntax: handle top-level label starts with a digit"
)

// Host failure reasons (NormalizeHost).
const (
	ErrHostEmpty         Error = "syntax: host is empty"
	ErrHostTooLong       Error = "syntax: host longer than 253 bytes"
	ErrHostScheme        Error = "syntax: host has a scheme other than https://, wss://, http:// or ws://"
	ErrHostChar          Error = "syntax: host contains a character outside [a-z0-9.-] before its port"
	ErrHostLabel         Error = "syntax: host label is empty, longer than 63 bytes, or starts or ends with '-'"
	ErrHostTooFewLabels  Error = "syntax: host has fewer than two labels"
	ErrHostTLDLeadsDigit Error = "syntax: host top-level label starts with a digit"
	ErrHostPort          Error = "syntax: host port is not decimal 1-65535 without a leading zero"
	ErrHostIP            Error = "syntax: host is an IP address other than loopback"
	ErrHostDevOnly       Error = "syntax: development host (http://, ws://, a port, localhost or loopback) without the development switch"
	ErrHostPortNotDev    Error = "syntax: port on a host that is not localhost, under .localhost or loopback"
)

// NSID failure reasons.
const (
	ErrNSIDEmpty          Error = "syntax: NSID is empty"
	ErrNSIDTooLong        Error = "syntax: NSID longer than 317 bytes"
	ErrNSIDChar           Error = "syntax: NSID contains a character outside [A-Za-z0-9.-]"
	ErrNSIDTooFewSegments Error = "syntax: NSID has fewer than three segments"
	ErrNSIDEmptySegment   Error = "syntax: NSID has an empty segment"
	ErrNSIDSegmentTooLong Error = "syntax: NSID segment longer than 63 bytes"
	ErrNSIDSegmentHyphen  Error = "syntax: NSID domain segment starts or ends with '-'"
	ErrNSIDLeadingDigit   Error = "syntax: NSID first segment starts with a digit"
	ErrNSIDName           Error = "syntax: NSID name is not [A-Za-z][A-Za-z0-9]*"
)

// Record key and repository path failure reasons.
const (
	ErrRecordKeyEmpty   Error = "syntax: record key is empty"
	ErrRecordKeyTooLong Error = "syntax: record key longer than 512 bytes"
	ErrRecordKeyChar    Error = "syntax: record key contains a character outside [A-Za-z0-9._:~-]"
	ErrRecordKeyDots    Error = "syntax: record key is '.' or '..'"
	ErrRepoPathTooLong  Error = "syntax: repo path longer than 1024 bytes"
	ErrRepoPathSlash    Error = "syntax: repo path does not contain exactly one '/'"
)

// TID failure reasons.
const (
	ErrTIDLength    Error = "syntax: TID is not 13 bytes"
	ErrTIDChar      Error = "syntax: TID contains a character outside the base32-sortable alphabet"
	ErrTIDFirstChar Error = "syntax: TID first character is outside [234567abcdefghij]"
)

// Datetime failure reasons. ErrDatetimeSyntax covers every shape failure;
// the semantic parse has one reason per field so bad producers can be told
// apart in metrics.
const (
	ErrDatetimeEmpty    Error = "syntax: datetime is empty"
	ErrDatetimeTooLong  Error = "syntax: datetime longer than 64 bytes"
	ErrDatetimeSyntax   Error = "syntax: datetime is not YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)"
	ErrDatetimeNegZero  Error = "syntax: datetime uses the -00:00 offset"
	ErrDatetimeMonth    Error = "syntax: datetime month out of range"
	ErrDatetimeDay      Error = "syntax: datetime day out of range"
	ErrDatetimeHour     Error = "syntax: datetime hour out of range"
	ErrDatetimeMinute   Error = "syntax: datetime minute out of range"
	ErrDatetimeSecond   Error = "syntax: datetime second out of range"
	ErrDatetimeOffset   Error = "syntax: datetime offset out of range"
	ErrDatetimeNegative Error = "syntax: datetime normalizes to a year before 0000"
)

// Lexicon string-format failure reasons (at-uri, uri, cid, language).
const (
	ErrATIdentifierEmpty Error = "syntax: at-identifier is empty"
	ErrATURITooLong      Error = "syntax: at-uri longer than 8192 bytes"
	ErrATURIPrefix       Error = "syntax: at-uri does not start with \"at://\""
	ErrATURIPath         Error = "syntax: at-uri path is not [/collection[/rkey]]"
	ErrURIEmpty          Error = "syntax: uri is empty"
	ErrURITooLong        Error = "syntax: uri longer than 8192 bytes"
	ErrURIScheme         Error = "syntax: uri scheme is not [a-z][a-z.-]{0,80} followed by ':'"
	ErrURIBody           Error = "syntax: uri body is empty or has a non-graphic character"
	ErrCIDStringLength   Error = "syntax: cid string is not 8 to 256 bytes"
	ErrCIDStringChar     Error = "syntax: cid string contains a character outside [A-Za-z0-9+=]"
	ErrCIDStringV0       Error = "syntax: cid string is a CIDv0"
	ErrLanguageEmpty     Error = "syntax: language tag is empty"
	ErrLanguageTooLong   Error = "syntax: language tag longer than 128 bytes"
	ErrLanguageSyntax    Error = "syntax: language tag is not (i|x|[a-z]{2,3})(-[A-Za-z0-9]{1,8})*"
	ErrLanguageDuplicate Error = "syntax: language tag repeats a variant or extension singleton"
)
