package capture

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/atrelay/relay/internal/fixtures"
)

// sharedDir is the real capture described in shared/captures/realpds-2/FORMAT.md.
func sharedDir() string { return fixtures.Path("captures/realpds-2") }

// TestImportSharedCounts checks the counts FORMAT.md states: 18,694 frames,
// per host seq 1..N contiguous, raw bytes, event types and 120 DID documents.
func TestImportSharedCounts(t *testing.T) {
	c, err := ImportShared(sharedDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Header.Sources) != 2 || c.Header.Sources[0].Hostname != "localhost:5201" || c.Header.Sources[1].Hostname != "localhost:5202" {
		t.Fatalf("sources: %+v", c.Header.Sources)
	}
	if len(c.Identities) != 120 {
		t.Fatalf("%d identities, want 120", len(c.Identities))
	}
	it, err := c.Records()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	want := []struct {
		frames, bytes                     int64
		commit, identity, account, syncEv int
	}{
		{9314, 16_664_324, 7703, 699, 588, 324},
		{9380, 16_773_189, 7740, 692, 612, 336},
	}
	frames := make([]int64, 2)
	bytesBy := make([]int64, 2)
	types := []map[string]int{{}, {}}
	var total int
	for {
		r, err := it.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		frames[r.Source]++
		if r.Seq != frames[r.Source] {
			t.Fatalf("host %d record %d: seq %d", r.Source, frames[r.Source]-1, r.Seq)
		}
		bytesBy[r.Source] += int64(len(r.Frame))
		info, err := PeekFrame(r.Frame)
		if err != nil {
			t.Fatal(err)
		}
		types[r.Source][info.Type]++
		if info.DID == "" || r.RecvTime == 0 {
			t.Fatalf("host %d seq %d: no did or time", r.Source, r.Seq)
		}
		total++
	}
	if total != 18_694 {
		t.Fatalf("%d frames, want 18694", total)
	}
	for i, w := range want {
		if frames[i] != w.frames || bytesBy[i] != w.bytes {
			t.Errorf("host %d: %d frames / %d bytes, want %d / %d", i, frames[i], bytesBy[i], w.frames, w.bytes)
		}
		got := types[i]
		if got["#commit"] != w.commit || got["#identity"] != w.identity || got["#account"] != w.account || got["#sync"] != w.syncEv {
			t.Errorf("host %d types: %v", i, got)
		}
	}
}

// TestSharedToFile converts the shared capture into one capture file and
// checks that every record and the snapshot survive the trip.
func TestSharedToFile(t *testing.T) {
	c, err := ImportShared(sharedDir())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteCapture(&buf, c); err != nil {
		t.Fatal(err)
	}
	f, err := OpenReaderAt(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	sameHeader(t, f.Header, c.Header)
	if len(f.Identities) != len(c.Identities) {
		t.Fatalf("snapshot: %d docs, want %d", len(f.Identities), len(c.Identities))
	}
	for did, doc := range c.Identities {
		if !bytes.Equal(f.Identities[did], doc) {
			t.Fatalf("snapshot %s differs", did)
		}
	}
	a, _ := c.Records()
	defer a.Close()
	b, _ := f.Records()
	defer b.Close()
	want, err := readAll(a)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(b)
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, got, want)
	t.Logf("shared capture: %d frames, file %d bytes", len(got), buf.Len())
}

func TestPeekFrame(t *testing.T) {
	cases := []struct {
		name  string
		frame []byte
		want  FrameInfo
		err   error
	}{
		{"identity", []byte("\xa2\x61t\x69#identity\x62op\x01\xa3\x63did\x63d:x\x63seq\x05\x64time\x61T"),
			FrameInfo{Op: 1, Type: "#identity", Seq: 5, DID: "d:x", Time: "T"}, nil},
		{"commit repo", []byte("\xa2\x61t\x67#commit\x62op\x01\xa2\x64repo\x63d:y\x63seq\x18\x2a"),
			FrameInfo{Op: 1, Type: "#commit", Seq: 42, DID: "d:y"}, nil},
		{"error frame", []byte("\xa1\x62op\x20\xa1\x65error\x6cFutureCursor"),
			FrameInfo{Op: -1, Error: "FutureCursor"}, nil},
		{"empty", nil, FrameInfo{}, ErrFrameHeader},
		{"header only", []byte("\xa1\x62op\x01"), FrameInfo{}, ErrFrameBody},
		{"trailing", []byte("\xa1\x62op\x01\xa0\x00"), FrameInfo{}, ErrFrameTrailing},
		{"header not a map", []byte("\x01\xa0"), FrameInfo{}, ErrFrameHeader},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PeekFrame(tc.frame)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func FuzzPeekFrame(f *testing.F) {
	f.Add([]byte("\xa2\x61t\x69#identity\x62op\x01\xa3\x63did\x63d:x\x63seq\x05\x64time\x61T"))
	f.Add([]byte("\xa1\x62op\x20\xa1\x65error\x6cFutureCursor"))
	f.Add([]byte("\x9f\x9f\x9f"))
	f.Fuzz(func(t *testing.T, frame []byte) {
		PeekFrame(frame)
	})
}
