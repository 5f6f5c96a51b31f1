package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// injectOn returns an injector failing the given operations on files whose
// name ends in one of the comma-separated suffixes, while the toggle is on.
func injectOn(suffixes string, kinds ...errorfs.OpKind) *errorfs.Toggle {
	return &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		matched := false
		for _, suffix := range strings.Split(suffixes, ",") {
			matched = matched || strings.HasSuffix(op.Path, suffix)
		}
		if !matched {
			return nil
		}
		for _, k := range kinds {
			if op.Kind == k {
				return errorfs.ErrInjected
			}
		}
		return nil
	})}
}

func TestWALWriteErrorSurfaces(t *testing.T) {
	for _, kind := range []errorfs.OpKind{errorfs.OpFileWrite, errorfs.OpFileSyncData} {
		t.Run(fmt.Sprint(kind), func(t *testing.T) {
			toggle := injectOn(".log", kind)
			fs := errorfs.Wrap(vfs.NewMem(), toggle)
			s := openTest(t, testOptions(fs))
			body := []byte("x")
			if _, err := appendEvents(s, []Event{{Kind: KindCommit, DID: did(1), Rev: rev(1)}}, body, nil); err != nil {
				t.Fatal(err)
			}
			toggle.On()
			_, err := appendEvents(s, []Event{{Kind: KindCommit, DID: did(1), Rev: rev(2)}}, body, nil)
			if !errors.Is(err, errorfs.ErrInjected) {
				t.Fatalf("Append with failing WAL %v: err = %v", kind, err)
			}
			toggle.Off()
			// The store refuses writes until reopened: memory may disagree with disk.
			if _, err := appendEvents(s, []Event{{Kind: KindIdentity}}, body, nil); !errors.Is(err, ErrFailed) {
				t.Fatalf("Append after failure: %v", err)
			}
			if err := s.BanDomain("x.example"); !errors.Is(err, ErrFailed) {
				t.Fatalf("BanDomain after failure: %v", err)
			}
			if s.NewestSeq() != 1 {
				t.Fatalf("NewestSeq advanced to %d on a failed commit", s.NewestSeq())
			}
			// Readers never see the event whose commit failed.
			if seqs, _ := collect(t, s, 0); len(seqs) != 1 {
				t.Fatalf("replay after failed commit: %v", seqs)
			}
			_ = s.Close()
		})
	}
}

func TestReadErrorSurfaces(t *testing.T) {
	// Event frames live in blob files (value separation), accounts in
	// sstables: both must surface read errors.
	toggle := injectOn(".sst,.blob", errorfs.OpFileReadAt, errorfs.OpFileRead)
	fs := errorfs.Wrap(vfs.NewMem(), toggle)
	o := testOptions(fs)
	s := openTest(t, o)
	// Enough data that accounts and events span many blocks, most of
	// which reopening does not read.
	body := make([]byte, 1024)
	batch := make([]Event, 2000)
	for i := range batch {
		batch[i] = Event{Kind: KindCommit, DID: did(i), Rev: rev(1)}
	}
	if _, err := appendEvents(s, batch, body, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Reopen so that nothing sits in the memtable or block cache.
	s = openTest(t, o)
	defer s.Close()
	toggle.On()
	defer toggle.Off()
	var a Account
	if _, err := s.GetAccount(did(1000), &a); !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("GetAccount with failing reads: %v", err)
	}
	if _, err := appendEvents(s, []Event{{Kind: KindCommit, DID: did(1500), Rev: rev(2)}}, body, nil); !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("Append with failing account read: %v", err)
	}
	it, err := s.NewIterator(0)
	if err != nil {
		t.Fatal(err)
	}
	for it.Next() {
	}
	if !errors.Is(it.Err(), errorfs.ErrInjected) {
		t.Fatalf("replay with failing reads: %v", it.Err())
	}
	it.Close()
	toggle.Off()
	// A failed read wrote nothing, so the store keeps working.
	if _, err := appendEvents(s, []Event{{Kind: KindCommit, DID: did(7), Rev: rev(2)}}, body, nil); err != nil {
		t.Fatalf("Append after read error cleared: %v", err)
	}
}
