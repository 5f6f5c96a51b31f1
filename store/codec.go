package store

import (
	"encoding/binary"
	"fmt"
)

// Key prefixes: on disk — never renumber.
const (
	prefixMeta     byte = 0x01
	prefixEvent    byte = 0x02
	prefixAccount  byte = 0x03
	prefixUID      byte = 0x04
	prefixHost     byte = 0x05
	prefixHostName byte = 0x06
	prefixBan      byte = 0x07
	prefixTime     byte = 0x08
	prefixHidden   byte = 0x09
)

// Meta keys: on disk — never change.
var (
	keySchema   = []byte{prefixMeta, 'v'}
	keyLastSeq  = []byte{prefixMeta, 's'}
	keyLastUID  = []byte{prefixMeta, 'u'}
	keyLastHID  = []byte{prefixMeta, 'h'}
	keyCrawlDay = []byte{prefixMeta, 'c'}
)

// SchemaVersion is the layout version this binary writes. Open refuses a
// database with a newer version (ErrSchema).
const SchemaVersion = 1

// valueVersion is the first byte of every event, account and host value.
const valueVersion = 1

// eventHeaderLen is the fixed part of an event value before the DID length.
const eventHeaderLen = 11

// accountFixedLen and hostFixedLen are the fixed parts of those values.
const (
	accountFixedLen = 23
	hostFixedLen    = 59
)

const hostFlagTrusted = 1

func appendEventKey(dst []byte, seq Seq) []byte {
	dst = append(dst, prefixEvent)
	return binary.BigEndian.AppendUint64(dst, uint64(seq))
}

func appendU64Key(dst []byte, prefix byte, v uint64) []byte {
	dst = append(dst, prefix)
	return binary.BigEndian.AppendUint64(dst, v)
}

func appendHostKey(dst []byte, id HostID) []byte {
	dst = append(dst, prefixHost)
	return binary.BigEndian.AppendUint32(dst, uint32(id))
}

func appendBytesKey(dst []byte, prefix byte, b []byte) []byte {
	dst = append(dst, prefix)
	return append(dst, b...)
}

// parseSeqKey decodes an event or time-index key's integer.
func parseU64Key(key []byte, prefix byte) (uint64, error) {
	if len(key) != 9 || key[0] != prefix {
		return 0, fmt.Errorf("%w: key %x is not a prefix-%#x integer key", ErrCorrupt, key, prefix)
	}
	return binary.BigEndian.Uint64(key[1:]), nil
}

// appendEventValue appends the event value header; the frame follows it.
func appendEventValue(dst []byte, kind Kind, unixMilli int64, did []byte) []byte {
	dst = append(dst, valueVersion, byte(kind), 0)
	dst = binary.BigEndian.AppendUint64(dst, uint64(unixMilli))
	dst = binary.AppendUvarint(dst, uint64(len(did)))
	return append(dst, did...)
}

// eventView is a decoded event value; did and frame alias the value.
type eventView struct {
	kind      Kind
	unixMilli int64
	did       []byte
	frame     []byte
}

// decodeEvent parses an event value without copying.
func decodeEvent(v []byte, ev *eventView) error {
	if len(v) < eventHeaderLen+1 {
		return fmt.Errorf("%w: event value of %d bytes", ErrCorrupt, len(v))
	}
	if v[0] != valueVersion {
		return fmt.Errorf("%w: event value version %d", ErrCorrupt, v[0])
	}
	ev.kind = Kind(v[1])
	if !ev.kind.valid() {
		return fmt.Errorf("%w: event kind %d", ErrCorrupt, v[1])
	}
	ev.unixMilli = int64(binary.BigEndian.Uint64(v[3:11]))
	did, rest, err := readBytes(v[eventHeaderLen:], MaxDIDBytes)
	if err != nil {
		return err
	}
	ev.did = did
	ev.frame = rest
	return nil
}

// readBytes reads uvarint(len) ‖ bytes, refusing lengths above max; it
// returns a view and the unread tail.
func readBytes(b []byte, max int) (val, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, nil, fmt.Errorf("%w: bad length varint", ErrCorrupt)
	}
	if n > uint64(max) || n > uint64(len(b)-k) {
		return nil, nil, fmt.Errorf("%w: length %d exceeds limit or value", ErrCorrupt, n)
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

func appendLenBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// Account is one account's stored state (spec §12.1). Byte fields are owned
// by the Account and reused by the next decode into it.
type Account struct {
	DID            []byte
	UID            uint64 // creation order, the listRepos paging key
	Host           HostID
	UpstreamStatus AccountStatus
	LocalStatus    LocalStatus
	LastSeenMilli  int64  // Unix ms of the last event for the account
	Rev            []byte // last accepted rev (TID); empty before the first commit
	Commit         []byte // binary CID of the last accepted commit
	Data           []byte // binary CID of that commit's MST root: the next prevData
}

// Active reports whether events of the account are served: both the host's
// word and the relay's allow it.
func (a *Account) Active() bool {
	return a.UpstreamStatus == StatusActive &&
		(a.LocalStatus == LocalActive || a.LocalStatus == LocalDesynchronized)
}

func appendAccountValue(dst []byte, a *Account) []byte {
	dst = append(dst, valueVersion)
	dst = binary.BigEndian.AppendUint64(dst, a.UID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(a.Host))
	dst = append(dst, byte(a.UpstreamStatus), byte(a.LocalStatus))
	dst = binary.BigEndian.AppendUint64(dst, uint64(a.LastSeenMilli))
	dst = appendLenBytes(dst, a.Rev)
	dst = appendLenBytes(dst, a.Commit)
	return appendLenBytes(dst, a.Data)
}

// decodeAccount parses an account value into a, copying into a's buffers;
// a.DID is left alone.
func decodeAccount(v []byte, a *Account) error {
	if len(v) < accountFixedLen {
		return fmt.Errorf("%w: account value of %d bytes", ErrCorrupt, len(v))
	}
	if v[0] != valueVersion {
		return fmt.Errorf("%w: account value version %d", ErrCorrupt, v[0])
	}
	a.UID = binary.BigEndian.Uint64(v[1:9])
	a.Host = HostID(binary.BigEndian.Uint32(v[9:13]))
	a.UpstreamStatus = AccountStatus(v[13])
	a.LocalStatus = LocalStatus(v[14])
	if !a.UpstreamStatus.valid() || !a.LocalStatus.valid() {
		return fmt.Errorf("%w: account status %d/%d", ErrCorrupt, v[13], v[14])
	}
	a.LastSeenMilli = int64(binary.BigEndian.Uint64(v[15:23]))
	rest := v[accountFixedLen:]
	var rev, commit, data []byte
	var err error
	if rev, rest, err = readBytes(rest, MaxRevBytes); err != nil {
		return err
	}
	if commit, rest, err = readBytes(rest, MaxCIDBytes); err != nil {
		return err
	}
	if data, rest, err = readBytes(rest, MaxCIDBytes); err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes after account", ErrCorrupt, len(rest))
	}
	a.Rev = append(a.Rev[:0], rev...)
	a.Commit = append(a.Commit[:0], commit...)
	a.Data = append(a.Data[:0], data...)
	return nil
}

// Host is one upstream host's stored record (spec §14.1). Host values are
// copied out of the store; strings are immutable and may be shared.
type Host struct {
	ID               HostID
	Hostname         string
	Status           HostStatus
	Trusted          bool
	Cursor           uint64 // last persisted upstream seq; 0 = none (connect live)
	AccountLimit     uint64
	AccountCount     uint64 // maintained in the same batch as account creation and migration
	Events           uint64 // events persisted from the host
	FirstSeenMilli   int64
	LastConnectMilli int64
	LastErrorMilli   int64
	LastError        string
}

func appendHostValue(dst []byte, h *Host) []byte {
	var flags byte
	if h.Trusted {
		flags |= hostFlagTrusted
	}
	dst = append(dst, valueVersion, byte(h.Status), flags)
	dst = binary.BigEndian.AppendUint64(dst, h.Cursor)
	dst = binary.BigEndian.AppendUint64(dst, h.AccountLimit)
	dst = binary.BigEndian.AppendUint64(dst, h.AccountCount)
	dst = binary.BigEndian.AppendUint64(dst, h.Events)
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.FirstSeenMilli))
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.LastConnectMilli))
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.LastErrorMilli))
	dst = binary.AppendUvarint(dst, uint64(len(h.Hostname)))
	dst = append(dst, h.Hostname...)
	dst = binary.AppendUvarint(dst, uint64(len(h.LastError)))
	return append(dst, h.LastError...)
}

// decodeHost parses a host value; id comes from the key.
func decodeHost(id HostID, v []byte) (Host, error) {
	if len(v) < hostFixedLen {
		return Host{}, fmt.Errorf("%w: host value of %d bytes", ErrCorrupt, len(v))
	}
	if v[0] != valueVersion {
		return Host{}, fmt.Errorf("%w: host value version %d", ErrCorrupt, v[0])
	}
	h := Host{ID: id, Status: HostStatus(v[1]), Trusted: v[2]&hostFlagTrusted != 0}
	if !h.Status.valid() {
		return Host{}, fmt.Errorf("%w: host status %d", ErrCorrupt, v[1])
	}
	be := binary.BigEndian
	h.Cursor = be.Uint64(v[3:])
	h.AccountLimit = be.Uint64(v[11:])
	h.AccountCount = be.Uint64(v[19:])
	h.Events = be.Uint64(v[27:])
	h.FirstSeenMilli = int64(be.Uint64(v[35:]))
	h.LastConnectMilli = int64(be.Uint64(v[43:]))
	h.LastErrorMilli = int64(be.Uint64(v[51:]))
	name, rest, err := readBytes(v[hostFixedLen:], MaxHostnameBytes)
	if err != nil {
		return Host{}, err
	}
	msg, rest, err := readBytes(rest, MaxErrorBytes)
	if err != nil {
		return Host{}, err
	}
	if len(rest) != 0 {
		return Host{}, fmt.Errorf("%w: %d trailing bytes after host", ErrCorrupt, len(rest))
	}
	h.Hostname = string(name)
	h.LastError = string(msg)
	return h, nil
}
