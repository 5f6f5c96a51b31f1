package storetest

import (
	"testing"

	"github.com/atrelay/relay/store"
)

// TestOpenHost: the store opens empty and Host creates an active host
// that reads back by name.
func TestOpenHost(t *testing.T) {
	st := Open(t)
	h := Host(t, st, "pds.example.com")
	got, found := st.HostByName("pds.example.com")
	if !found {
		t.Fatal("HostByName: not found")
	}
	if got.ID != h.ID || got.Status != store.HostActive || got.AccountLimit != 100 {
		t.Fatalf("host %+v, want id %d, active, limit 100", got, h.ID)
	}
}
