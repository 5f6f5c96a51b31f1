package capture

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"
)

// ErrShared: a shared-format capture folder is inconsistent (bad hosts.json,
// seq not contiguous, counts differing from hosts.json).
var ErrShared = errors.New("capture: bad shared capture")

// sharedHosts is the part of hosts.json ImportShared uses.
type sharedHosts struct {
	CapturedAt string `json:"capturedAt"`
	Kind       string `json:"kind"`
	Hosts      []struct {
		Index      int    `json:"index"`
		Hostname   string `json:"hostname"`
		PublicURL  string `json:"publicUrl"`
		File       string `json:"file"`
		Frames     int64  `json:"frames"`
		FrameBytes int64  `json:"frameBytes"`
	} `json:"hosts"`
}

// ImportShared reads a capture folder in the shared format
// (internal/testdata/captures/<name>/FORMAT.md: frames-<i>.bin.zst per host,
// hosts.json, dids.json). Records come host by host, each host in file
// order; RecvTime is the frame's own "time" field (the shared format stores
// no receive time), so real-time pacing follows the original schedule.
// Iteration checks each host's seqs run 1..N without gaps and that frame
// and byte counts equal hosts.json.
func ImportShared(dir string) (*Capture, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "hosts.json"))
	if err != nil {
		return nil, err
	}
	var hj sharedHosts
	if err := json.Unmarshal(raw, &hj); err != nil {
		return nil, fmt.Errorf("%w: hosts.json: %w", ErrShared, err)
	}
	created, err := time.Parse(time.RFC3339Nano, hj.CapturedAt)
	if err != nil {
		return nil, fmt.Errorf("%w: hosts.json capturedAt: %w", ErrShared, err)
	}
	hdr := Header{Created: created.UTC(), Note: fmt.Sprintf("imported from %s (%s)", dir, hj.Kind)}
	for i, h := range hj.Hosts {
		if h.Index != i || h.File == "" || filepath.Base(h.File) != h.File || h.Frames < 0 {
			return nil, fmt.Errorf("%w: hosts.json host %d", ErrShared, i)
		}
		hdr.Sources = append(hdr.Sources, Source{URL: h.PublicURL, Hostname: h.Hostname, Frames: h.Frames})
	}
	raw, err = os.ReadFile(filepath.Join(dir, "dids.json"))
	if err != nil {
		return nil, err
	}
	var snap Snapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		return nil, fmt.Errorf("%w: dids.json: %w", ErrShared, err)
	}
	c := &Capture{Header: hdr, Identities: snap}
	c.open = func() (Iterator, error) { return &sharedIter{dir: dir, hosts: hj, host: -1}, nil }
	return c, nil
}

// sharedIter walks the hosts' files one after another. All fields are
// owned by the iterating goroutine.
type sharedIter struct {
	dir      string
	hosts    sharedHosts
	host     int // current host index; -1 before the first
	f        *os.File
	zr       *zstd.Decoder
	br       *bufio.Reader
	buf      []byte
	n        int64 // records read from the current host
	bytes    int64
	lastTime int64
	err      error // sticky
}

func (it *sharedIter) Next() (Record, error) {
	if it.err != nil {
		return Record{}, it.err
	}
	rec, err := it.next()
	if err != nil {
		it.err = err
	}
	return rec, err
}

func (it *sharedIter) next() (Record, error) {
	for {
		if it.br == nil {
			if it.host+1 >= len(it.hosts.Hosts) {
				return Record{}, io.EOF
			}
			if err := it.openHost(it.host + 1); err != nil {
				return Record{}, err
			}
		}
		n, err := binary.ReadUvarint(it.br)
		if errors.Is(err, io.EOF) {
			if err := it.finishHost(); err != nil {
				return Record{}, err
			}
			continue
		}
		if err != nil {
			return Record{}, it.fail(wrapRead("frame length", err))
		}
		if n > MaxFrameBytes {
			return Record{}, it.fail(fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n))
		}
		if uint64(cap(it.buf)) < n {
			it.buf = make([]byte, n, max(n, 8<<10))
		}
		it.buf = it.buf[:n]
		if _, err := io.ReadFull(it.br, it.buf); err != nil {
			return Record{}, it.fail(wrapRead("frame", err))
		}
		info, err := PeekFrame(it.buf)
		if err != nil {
			return Record{}, it.fail(err)
		}
		if info.Seq != it.n+1 {
			return Record{}, it.fail(fmt.Errorf("%w: record %d has seq %d, want %d", ErrShared, it.n, info.Seq, it.n+1))
		}
		if t, err := time.Parse(time.RFC3339Nano, info.Time); err == nil {
			it.lastTime = t.UnixNano()
		}
		it.n++
		it.bytes += int64(n)
		return Record{Source: it.host, RecvTime: it.lastTime, Seq: info.Seq, Frame: it.buf}, nil
	}
}

func (it *sharedIter) fail(err error) error {
	return fmt.Errorf("%s: %w", it.hosts.Hosts[it.host].File, err)
}

func (it *sharedIter) openHost(i int) error {
	it.host = i
	f, err := os.Open(filepath.Join(it.dir, it.hosts.Hosts[i].File))
	if err != nil {
		return err
	}
	zr, err := newDecoder(f)
	if err != nil {
		f.Close()
		return it.fail(fmt.Errorf("%w: %w", ErrCorrupt, err))
	}
	it.f, it.zr, it.br = f, zr, newBufReader(zr)
	it.n, it.bytes = 0, 0
	return nil
}

func (it *sharedIter) finishHost() error {
	h := it.hosts.Hosts[it.host]
	it.closeHost()
	if it.n != h.Frames || it.bytes != h.FrameBytes {
		return fmt.Errorf("%w: %s: %d frames / %d bytes, hosts.json says %d / %d",
			ErrCountMismatch, h.File, it.n, it.bytes, h.Frames, h.FrameBytes)
	}
	return nil
}

func (it *sharedIter) closeHost() {
	if it.zr != nil {
		it.zr.Close()
		it.f.Close()
	}
	it.f, it.zr, it.br = nil, nil, nil
}

func (it *sharedIter) Close() error {
	it.closeHost()
	if it.err == nil {
		it.err = ErrClosed
	}
	return nil
}

// OpenPath opens either form a capture comes in: a shared-format folder
// (one with hosts.json) through ImportShared, anything else as a capture
// file through Open.
func OpenPath(path string) (*Capture, error) {
	if _, err := os.Stat(filepath.Join(path, "hosts.json")); err == nil {
		return ImportShared(path)
	}
	return Open(path)
}
