package storetest

import (
	"testing"
	"time"

	"github.com/atrelay/relay/store"
)

// Open opens a small store in a fresh t.TempDir, without fsync, and closes
// it when the test ends: for tests that need a real store but not its
// durability.
func Open(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{
		BlockCacheBytes: 8 << 20, MemTableBytes: 4 << 20, RetentionInterval: time.Hour, Sync: store.NoSync,
	})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// Host creates an active host called name, allowed 100 accounts.
func Host(t testing.TB, st *store.Store, name string) store.Host {
	t.Helper()
	h, err := st.CreateHost(store.NewHost{Hostname: name, Status: store.HostActive, AccountLimit: 100})
	if err != nil {
		t.Fatalf("CreateHost: %v", err)
	}
	return h
}
