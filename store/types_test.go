package store

import "testing"

// TestStatusNames pins the names the admin API and the metrics print for
// the stored enums, and the fallback for a value without a name (one a
// newer or damaged database holds).
func TestStatusNames(t *testing.T) {
	for _, c := range []struct {
		v    interface{ String() string }
		want string
	}{
		{KindCommit, "commit"}, {KindAccount, "account"}, {Kind(0), "kind(0)"}, {Kind(9), "kind(9)"},
		{StatusUnchanged, "unchanged"}, {StatusDesynchronized, "desynchronized"}, {StatusThrottled, "throttled"},
		{AccountStatus(8), "status(8)"},
		{LocalActive, "active"}, {LocalHostThrottled, "host-throttled"}, {LocalStatus(0), "local(0)"},
		{LocalStatus(255), "local(255)"},
		{HostActive, "active"}, {HostBanned, "banned"}, {HostStatus(0), "hoststatus(0)"}, {HostStatus(6), "hoststatus(6)"},
	} {
		if got := c.v.String(); got != c.want {
			t.Errorf("%T(%d).String() = %q, want %q", c.v, c.v, got, c.want)
		}
	}
}
