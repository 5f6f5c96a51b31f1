package relay

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/store"
)

// TestStoreBatchLimit opens a store whose Append takes at most 2 events and
// replays the realpds-2 capture through a relay left at the default batch
// size. The default must follow the store's limit: before, the sequencer
// built batches of up to DefaultMaxBatchEvents, the first larger one failed
// with ErrBatchTooBig and ingestion stopped for good. An explicit
// MaxBatchEvents above the store's limit is refused by New.
func TestStoreBatchLimit(t *testing.T) {
	fl := startFleet(t, true)
	st, err := store.Open(t.TempDir(), store.Options{Sync: store.NoSync, MaxBatchEvents: 2,
		BlockCacheBytes: 8 << 20, MemTableBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ids := identity.New(identity.Config{PLCURL: fl.PLCURL, AllowInsecureHosts: true})
	defer ids.Close()
	hub, err := firehose.NewHub(store.FirehoseLog{St: st}, firehose.Config{RingBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	deps := Deps{Store: st, Identity: ids, Hub: hub}

	explicit := testConfig()
	explicit.MaxBatchEvents = 3
	if r, err := New(explicit, deps); !errors.Is(err, ErrConfig) {
		if r != nil {
			_ = r.Close()
		}
		t.Fatalf("New with MaxBatchEvents 3 over a store of 2: err %v, want ErrConfig", err)
	}

	r, err := New(testConfig(), deps)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.cfg.MaxBatchEvents != 2 {
		t.Fatalf("MaxBatchEvents %d, want the store's 2", r.cfg.MaxBatchEvents)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, name := range fl.Hostnames {
		if err := r.RequestCrawl(context.Background(), name); err != nil {
			t.Fatalf("requestCrawl %s: %v", name, err)
		}
	}
	// A gated host released before the relay subscribed would send its
	// frames to nobody.
	deadline := time.Now().Add(hangTimeout)
	for connected := 0; connected < len(fl.Hostnames); {
		connected = 0
		for _, h := range r.Hosts() {
			if h.Connected {
				connected++
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d hosts connected before the deadline", connected, len(fl.Hostnames))
		}
		time.Sleep(5 * time.Millisecond)
	}
	total := 0
	for _, fh := range fl.Replay.Hosts() {
		total += fh.Frames
	}
	fl.Replay.Start()
	deadline = time.Now().Add(hangTimeout)
	for int(st.NewestSeq()) < total {
		if err := r.Err(); err != nil {
			t.Fatalf("ingestion stopped at seq %d of %d: %v", st.NewestSeq(), total, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("logged %d of %d events before the deadline", st.NewestSeq(), total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
}
