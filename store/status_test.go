package store

import (
	"testing"

	"github.com/atrelay/relay/engine/atproto/event"
)

// TestAccountStatusWire pins the lexicon spellings (they go on the wire
// byte for byte) and that ParseAccountStatus reads back what String writes.
func TestAccountStatusWire(t *testing.T) {
	f := func(s AccountStatus, want string) {
		t.Helper()
		if got := s.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", s, got, want)
		}
		if s == StatusActive {
			return
		}
		if got := ParseAccountStatus(false, []byte(want)); got != s {
			t.Errorf("ParseAccountStatus(false, %q) = %v, want %v", want, got, s)
		}
	}
	f(StatusActive, "active")
	f(StatusDeactivated, "deactivated")
	f(StatusDeleted, "deleted")
	f(StatusTakendown, "takendown")
	f(StatusSuspended, "suspended")
	f(StatusDesynchronized, "desynchronized")
	f(StatusThrottled, "throttled")
	if got := StatusUnchanged.String(); got != "unchanged" {
		t.Errorf("StatusUnchanged.String() = %q", got)
	}
	if got := AccountStatus(99).String(); got != "status(99)" {
		t.Errorf("AccountStatus(99).String() = %q", got)
	}
}

// TestParseAccountStatus covers what a host may send besides the known
// names: active wins, and anything inactive but unnamed is deactivated.
func TestParseAccountStatus(t *testing.T) {
	f := func(active bool, status string, want AccountStatus) {
		t.Helper()
		if got := ParseAccountStatus(active, []byte(status)); got != want {
			t.Errorf("ParseAccountStatus(%v, %q) = %v, want %v", active, status, got, want)
		}
	}
	f(true, "", StatusActive)
	f(true, "takendown", StatusActive)
	f(false, "", StatusDeactivated)
	f(false, "active", StatusDeactivated)
	f(false, "unchanged", StatusDeactivated)
	f(false, "Takendown", StatusDeactivated)
	f(false, "takendownx", StatusDeactivated)
	f(false, "some-future-status", StatusDeactivated)
	status := []byte("desynchronized")
	if n := testing.AllocsPerRun(100, func() { ParseAccountStatus(false, status) }); n != 0 {
		t.Errorf("ParseAccountStatus allocates %v times", n)
	}
}

// TestLocalStatusReported pins what the relay reports for each of its own
// statuses, and the log name that tells the two throttles apart.
func TestLocalStatusReported(t *testing.T) {
	f := func(l LocalStatus, reported AccountStatus, name string) {
		t.Helper()
		if got := l.Reported(); got != reported {
			t.Errorf("%v.Reported() = %v, want %v", l, got, reported)
		}
		if got := l.String(); got != name {
			t.Errorf("LocalStatus(%d).String() = %q, want %q", l, got, name)
		}
	}
	f(LocalActive, StatusActive, "active")
	f(LocalTakendown, StatusTakendown, "takendown")
	f(LocalSuspended, StatusSuspended, "suspended")
	f(LocalThrottled, StatusThrottled, "throttled")
	f(LocalDesynchronized, StatusDesynchronized, "desynchronized")
	f(LocalHostThrottled, StatusThrottled, "host-throttled")
	f(0, StatusUnchanged, "local(0)")
	f(7, StatusUnchanged, "local(7)")
}

// TestHostStatusNames pins the lexicon spellings of host statuses and that
// ParseHostStatus reads back exactly those.
func TestHostStatusNames(t *testing.T) {
	f := func(s HostStatus, name string) {
		t.Helper()
		if got := s.String(); got != name {
			t.Errorf("%d.String() = %q, want %q", s, got, name)
		}
		if got, ok := ParseHostStatus(name); !ok || got != s {
			t.Errorf("ParseHostStatus(%q) = %v, %v", name, got, ok)
		}
	}
	f(HostActive, "active")
	f(HostIdle, "idle")
	f(HostOffline, "offline")
	f(HostThrottled, "throttled")
	f(HostBanned, "banned")
	for _, name := range []string{"", "Active", "hoststatus(0)", "banned "} {
		if s, ok := ParseHostStatus(name); ok {
			t.Errorf("ParseHostStatus(%q) = %v, want none", name, s)
		}
	}
}

// TestKindFrames pins the stored kinds' names and their frame kinds, both
// ways; frames the log never holds have no stored kind.
func TestKindFrames(t *testing.T) {
	f := func(k Kind, frame event.Kind, name string) {
		t.Helper()
		if got := k.String(); got != name {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, name)
		}
		if got, ok := KindOf(frame); !ok || got != k {
			t.Errorf("KindOf(%v) = %v, %v; want %v", frame, got, ok, k)
		}
	}
	f(KindCommit, event.KindCommit, "commit")
	f(KindSync, event.KindSync, "sync")
	f(KindIdentity, event.KindIdentity, "identity")
	f(KindAccount, event.KindAccount, "account")
	for _, frame := range []event.Kind{event.KindUnknown, event.KindInfo, event.KindError, 99} {
		if k, ok := KindOf(frame); ok {
			t.Errorf("KindOf(%v) = %v, want none", frame, k)
		}
	}
	if got := Kind(9).String(); got != "kind(9)" {
		t.Errorf("Kind(9).String() = %q", got)
	}
}
