package store

import (
	"errors"
	"strconv"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/atproto/syntax"
)

// Seq is a relay sequence number. The writer (the relay's sequencer)
// assigns seqs, contiguous from Options.InitialSeq, and the store checks
// that they continue its log without gap or reuse; a seq is durable before
// Staged.Commit returns, so before any consumer sees it. Valid seqs lie in
// [1, MaxSeq].
type Seq uint64

// SeqNone is "no seq": an empty log's oldest and newest seq, and the seq
// of an event Stage dropped.
const SeqNone Seq = 0

// MaxSeq is the largest seq the store assigns: 2^53−1, so seqs survive JSON
// numbers (spec §9.3).
const MaxSeq Seq = 1<<53 - 1

// HostID identifies an upstream host. The store assigns ids on host
// creation, increasing, so id order is first-seen order.
type HostID uint32

// HostNone is "no host": relay-generated events and unknown hosts.
const HostNone HostID = 0

// Kind is the type of a logged event.
type Kind uint8

// Event kinds; the values are stored on disk.
const (
	KindCommit   Kind = 1
	KindSync     Kind = 2
	KindIdentity Kind = 3
	KindAccount  Kind = 4
)

func (k Kind) valid() bool { return k >= KindCommit && k <= KindAccount }

// kindFrames pairs each stored kind with the frame kind it logs. Only the
// store's numbering is on disk, so the pairing is spelled out.
var kindFrames = [...]event.Kind{
	KindCommit:   event.KindCommit,
	KindSync:     event.KindSync,
	KindIdentity: event.KindIdentity,
	KindAccount:  event.KindAccount,
}

// KindOf returns the stored kind of frames of kind k; false for the kinds
// the log never holds (#info, error, unknown). No allocation.
func KindOf(k event.Kind) (Kind, bool) {
	for s := KindCommit; s <= KindAccount; s++ {
		if kindFrames[s] == k {
			return s, true
		}
	}
	return 0, false
}

// String returns the message type name without the '#'.
func (k Kind) String() string { return nameOf(kindNames[:], k, "kind") }

var kindNames = [...]string{KindCommit: "commit", KindSync: "sync", KindIdentity: "identity", KindAccount: "account"}

// nameOf returns names[v], or prefix(v) for a value without a name (one
// read from a newer or damaged database).
func nameOf[T ~uint8](names []string, v T, prefix string) string {
	if int(v) < len(names) && names[v] != "" {
		return names[v]
	}
	return prefix + "(" + strconv.Itoa(int(v)) + ")"
}

// AccountStatus is an account's status as its host reports it (spec §13.4).
// The values are stored on disk.
type AccountStatus uint8

// Upstream account statuses. StatusUnchanged is not stored: in an Event it
// means "leave the stored status as it is".
const (
	StatusUnchanged      AccountStatus = 0
	StatusActive         AccountStatus = 1
	StatusDeactivated    AccountStatus = 2
	StatusDeleted        AccountStatus = 3
	StatusTakendown      AccountStatus = 4
	StatusSuspended      AccountStatus = 5
	StatusDesynchronized AccountStatus = 6
	StatusThrottled      AccountStatus = 7
)

func (s AccountStatus) valid() bool { return s >= StatusActive && s <= StatusThrottled }

// accountStatusNames spells each status as the lexicon's knownValues do
// (com.atproto.sync.subscribeRepos#account, getRepoStatus); these bytes go
// on the wire. "unchanged" is never sent: it only names the zero value.
var accountStatusNames = [...]string{
	StatusUnchanged:      "unchanged",
	StatusActive:         "active",
	StatusDeactivated:    "deactivated",
	StatusDeleted:        "deleted",
	StatusTakendown:      "takendown",
	StatusSuspended:      "suspended",
	StatusDesynchronized: "desynchronized",
	StatusThrottled:      "throttled",
}

// String returns the lexicon spelling of the status.
func (s AccountStatus) String() string { return nameOf(accountStatusNames[:], s, "status") }

// ParseAccountStatus maps an #account's active flag and status name onto a
// status (spec §13.4). Active wins over any name. An inactive account with
// an absent or unknown name is StatusDeactivated: there is no stored
// "inactive" value, and deactivated is the least severe inactive one (the
// relayed event still carries the name the host sent). No allocation.
func ParseAccountStatus(active bool, status []byte) AccountStatus {
	if active {
		return StatusActive
	}
	for s := StatusDeleted; s <= StatusThrottled; s++ {
		if string(status) == accountStatusNames[s] {
			return s
		}
	}
	return StatusDeactivated
}

// LocalStatus is the relay's own verdict on an account (spec §13.4). The
// values are stored on disk.
type LocalStatus uint8

// Local statuses.
const (
	LocalActive         LocalStatus = 1
	LocalTakendown      LocalStatus = 2
	LocalSuspended      LocalStatus = 3
	LocalThrottled      LocalStatus = 4
	LocalDesynchronized LocalStatus = 5
	LocalHostThrottled  LocalStatus = 6
)

func (s LocalStatus) valid() bool { return s >= LocalActive && s <= LocalHostThrottled }

// hides reports whether the status hides the account's earlier events from
// replay (REC of spec §13.4).
func (s LocalStatus) hides() bool { return s == LocalTakendown || s == LocalSuspended }

// Reported returns the account status the relay reports for an account it
// holds in this local status: throttling of either kind is "throttled".
// Unknown values give StatusUnchanged, which names no status.
func (s LocalStatus) Reported() AccountStatus {
	switch s {
	case LocalActive:
		return StatusActive
	case LocalTakendown:
		return StatusTakendown
	case LocalSuspended:
		return StatusSuspended
	case LocalThrottled, LocalHostThrottled:
		return StatusThrottled
	case LocalDesynchronized:
		return StatusDesynchronized
	}
	return StatusUnchanged
}

// String returns the status name: the reported one, except that
// "host-throttled" tells the host's account limit from an operator's throttle.
func (s LocalStatus) String() string {
	if s == LocalHostThrottled {
		return "host-throttled"
	}
	if r := s.Reported(); r != StatusUnchanged {
		return r.String()
	}
	return "local(" + strconv.Itoa(int(s)) + ")"
}

// HostStatus is a host's subscription state (spec §14.1). The values are
// stored on disk.
type HostStatus uint8

// Host statuses.
const (
	HostActive    HostStatus = 1
	HostIdle      HostStatus = 2
	HostOffline   HostStatus = 3
	HostThrottled HostStatus = 4
	HostBanned    HostStatus = 5
)

func (s HostStatus) valid() bool { return s >= HostActive && s <= HostBanned }

// String returns the lexicon spelling of the status.
func (s HostStatus) String() string { return nameOf(hostStatusNames[:], s, "hoststatus") }

var hostStatusNames = [...]string{
	HostActive: "active", HostIdle: "idle", HostOffline: "offline", HostThrottled: "throttled", HostBanned: "banned",
}

// ParseHostStatus returns the status String spells as name; false for
// any other name.
func ParseHostStatus(name string) (HostStatus, bool) {
	for s := HostActive; s <= HostBanned; s++ {
		if s.String() == name {
			return s, true
		}
	}
	return 0, false
}

// Size limits. Inputs beyond them are refused with ErrTooLong before
// anything is written; stored values beyond them are reported as ErrCorrupt.
const (
	MaxDIDBytes      = syntax.MaxDIDLen    // spec §11
	MaxRevBytes      = 64                  // a TID is 13 characters; room for odd legacy revs
	MaxCIDBytes      = cid.MaxLen          // any CID the relay accepts
	MaxHostnameBytes = syntax.MaxHostLen   // a normalized host, port included
	MaxErrorBytes    = 512                 // last error text kept per host
	MaxFrameBytes    = event.MaxFrameBytes // spec §11 max frame
	MaxDomainBytes   = MaxHostnameBytes
)

// Errors. Each failure reason is a distinct value; wrapped errors carry
// context and match with errors.Is.
var (
	ErrClosed    = errors.New("store: closed")
	ErrFailed    = errors.New("store: an earlier write failed; reopen the store")
	ErrCorrupt   = errors.New("store: corrupt stored value")
	ErrSchema    = errors.New("store: database schema is newer than this binary")
	ErrTooLong   = errors.New("store: input exceeds a size limit")
	ErrBadKind   = errors.New("store: invalid event kind")
	ErrBadStatus = errors.New("store: invalid status value")
	// ErrSeqOrder: a row's seq is outside [1, MaxSeq] or not above the
	// newest logged seq or the previous row's.
	ErrSeqOrder = errors.New("store: seq not above the newest logged seq")
	// ErrSeqGap: a row's seq given to Staged.Commit does not continue the
	// log (the newest seq or the previous row's) by exactly one.
	ErrSeqGap = errors.New("store: seq leaves a gap in the log")
	// ErrRowCount: Staged.Commit got a different number of rows than
	// Stage logged events.
	ErrRowCount = errors.New("store: rows do not match the staged events")
	// ErrNotStaged: Commit on a Staged already committed.
	ErrNotStaged   = errors.New("store: nothing staged")
	ErrBatchTooBig = errors.New("store: batch has more events than Options.MaxBatchEvents")
	ErrNoAccount   = errors.New("store: no such account")
	ErrNoHost      = errors.New("store: no such host")
	ErrHostExists  = errors.New("store: host already exists")
	ErrBadOptions  = errors.New("store: invalid options")
)
