package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func testIdentity(i int) IdentityRecord {
	r := IdentityRecord{
		ResolvedAt: 1_800_000_000 + int64(i),
		KeyType:    KeyK256,
		PDSHost:    []byte(fmt.Sprintf("pds%d.example.com", i%7)),
		Handle:     []byte(fmt.Sprintf("user%d.example.com", i)),
	}
	r.Key[0] = 2 + byte(i%2)
	for j := 1; j < len(r.Key); j++ {
		r.Key[j] = byte(i + j)
	}
	return r
}

func sameIdentity(a, b *IdentityRecord) bool {
	return a.ResolvedAt == b.ResolvedAt && a.KeyType == b.KeyType && a.Key == b.Key &&
		bytes.Equal(a.PDSHost, b.PDSHost) && bytes.Equal(a.Handle, b.Handle)
}

// TestIdentityRoundTrip writes, reads, replaces, deletes and scans rows,
// and checks a row that does not decode is reported, not returned.
func TestIdentityRoundTrip(t *testing.T) {
	s := openTest(t, testOptions(vfs.NewMem()))
	defer s.Close()
	b := s.NewIdentityBatch()
	defer b.Close()
	for i := range 100 {
		r := testIdentity(i)
		if i == 3 {
			r.Handle = nil
		}
		if err := b.Set(did(i), &r); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	var got IdentityRecord
	for i := range 100 {
		want := testIdentity(i)
		if i == 3 {
			want.Handle = nil
		}
		if ok, err := s.GetIdentity(did(i), &got); !ok || err != nil || !sameIdentity(&got, &want) {
			t.Fatalf("row %d: %v %v %+v", i, ok, err, got)
		}
	}
	if err := s.DeleteIdentity(did(5)); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.GetIdentity(did(5), &got); ok || err != nil {
		t.Fatalf("deleted row reads %v %v", ok, err)
	}
	bad := testIdentity(0)
	bad.KeyType = 9
	if err := b.Set(did(1), &bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Set of an invalid row: %v", err)
	}
	// A damaged value: decoding refuses it, scanning reports it.
	if err := s.db.Set(appendIdentityKey(nil, did(7)), []byte{1, 2, 3}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetIdentity(did(7), &got); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged row: %v", err)
	}
	var after []byte
	seen, corrupt := 0, 0
	for {
		last, err := s.ScanIdentities(after, 13, func(d []byte, r *IdentityRecord, err error) {
			if err != nil {
				corrupt++
				return
			}
			seen++
		})
		if err != nil {
			t.Fatal(err)
		}
		if last == nil {
			break
		}
		after = last
	}
	if seen != 98 || corrupt != 1 {
		t.Fatalf("scan saw %d rows and %d corrupt, want 98 and 1", seen, corrupt)
	}
}

// TestIdentityRowsSurvivePowerLoss: rows committed (NoSync) before a
// synced Append survive a power loss that keeps only synced data for
// sure; rows committed after are absent or whole, never damaged.
func TestIdentityRowsSurvivePowerLoss(t *testing.T) {
	for round := range 20 {
		fs := vfs.NewCrashableMem()
		s := openTest(t, testOptions(fs))
		b := s.NewIdentityBatch()
		for i := range 50 {
			r := testIdentity(i)
			_ = b.Set(did(i), &r)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteIdentity(did(10)); err != nil {
			t.Fatal(err)
		}
		body := []byte("x")
		if _, err := appendEvents(s, []Event{{Kind: KindIdentity, DID: did(0)}}, body, nil); err != nil {
			t.Fatal(err)
		}
		for i := 50; i < 100; i++ {
			r := testIdentity(i)
			_ = b.Set(did(i), &r)
			if i%10 == 9 {
				_ = b.Commit()
			}
		}
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(uint64(round), 7))})
		b.Close()
		s.Close()
		s2 := openTest(t, testOptions(clone))
		var got IdentityRecord
		for i := range 100 {
			ok, err := s2.GetIdentity(did(i), &got)
			if err != nil {
				t.Fatalf("round %d row %d: %v", round, i, err)
			}
			want := testIdentity(i)
			switch {
			case i == 10 && ok:
				t.Fatalf("round %d: the row deleted before the synced batch is back", round)
			case i < 50 && i != 10 && !ok:
				t.Fatalf("round %d: row %d, written before the synced batch, is lost", round, i)
			case ok && !sameIdentity(&got, &want):
				t.Fatalf("round %d: row %d reads %+v", round, i, got)
			}
		}
		s2.Close()
	}
}

// TestIdentityBytesOnDisk writes rows shaped like the network's (random
// did:plc identifiers and keys, distinct handles, hosts from a few
// hundred), compacts them and reports what a row costs on disk.
func TestIdentityBytesOnDisk(t *testing.T) {
	const n = 50_000
	s := openTest(t, testOptions(vfs.NewMem()))
	defer s.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	const b32 = "abcdefghijklmnopqrstuvwxyz234567"
	b := s.NewIdentityBatch()
	defer b.Close()
	for i := range n {
		d := []byte("did:plc:")
		for range 24 {
			d = append(d, b32[rng.IntN(32)])
		}
		r := IdentityRecord{
			ResolvedAt: 1_800_000_000 + rng.Int64N(86400),
			KeyType:    KeyK256,
			PDSHost:    []byte(fmt.Sprintf("pds%d.us-east.host.bsky.network", rng.IntN(300))),
			Handle:     []byte(fmt.Sprintf("%s%d.bsky.social", string(d[8:8+6+rng.IntN(6)]), rng.IntN(1000))),
		}
		r.Key[0] = 2 + byte(rng.IntN(2))
		for j := 1; j < len(r.Key); j++ {
			r.Key[j] = byte(rng.Uint32())
		}
		if err := b.Set(d, &r); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 {
			if err := b.Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	lo, hi := []byte{prefixIdentity}, []byte{prefixIdentity + 1}
	if err := s.db.Compact(context.Background(), lo, hi, true); err != nil {
		t.Fatal(err)
	}
	size, err := s.db.EstimateDiskUsage(lo, hi)
	if err != nil {
		t.Fatal(err)
	}
	perRow := float64(size) / n
	t.Logf("%d identity rows: %.1f bytes per row on disk", n, perRow)
	if perRow > 150 {
		t.Fatalf("%.1f bytes per row on disk, want at most 150", perRow)
	}
}
