package mst

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/internal/fixtures"
	"github.com/fxamacker/cbor/v2"
)

// errCAR reports a malformed CAR in test data.
var errCAR = errors.New("test CAR malformed")

// splitCAR is a minimal test-only CARv1 reader: varint(len) header, then
// sections varint(len) ‖ CID ‖ data. It returns the blocks keyed by binary
// CID (views into car).
func splitCAR(car []byte) (map[string][]byte, error) {
	hl, n := binary.Uvarint(car)
	if n <= 0 || uint64(len(car)-n) < hl {
		return nil, errCAR
	}
	rest := car[n+int(hl):]
	blocks := map[string][]byte{}
	for len(rest) > 0 {
		sl, n := binary.Uvarint(rest)
		if n <= 0 || uint64(len(rest)-n) < sl {
			return nil, errCAR
		}
		sec := rest[n : n+int(sl)]
		rest = rest[n+int(sl):]
		c, data, err := cid.Parse(sec)
		if err != nil {
			return nil, err
		}
		blocks[string(c)] = data
	}
	return blocks, nil
}

// jsonLink is an atproto-JSON {"$link": "..."} (null → nil).
type jsonLink struct{ C cid.CID }

func (l *jsonLink) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var v struct {
		Link string `json:"$link"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	c, err := cid.Decode(v.Link)
	l.C = c
	return err
}

func actionOf(s string) Action {
	switch s {
	case "create":
		return ActionCreate
	case "update":
		return ActionUpdate
	case "delete":
		return ActionDelete
	}
	return 0
}

// Fixture: bluesky-social/indigo @ 4b983a7 cmd/relay/testing/testdata.
func TestPostLifecycleInverts(t *testing.T) {
	var doc struct {
		Messages []struct {
			Frame struct {
				Header struct {
					T string `json:"t"`
				} `json:"header"`
				Body struct {
					Seq    int64 `json:"seq"`
					Blocks struct {
						Bytes string `json:"$bytes"`
					} `json:"blocks"`
					Commit   jsonLink `json:"commit"`
					PrevData jsonLink `json:"prevData"`
					Ops      []struct {
						Action string   `json:"action"`
						Path   string   `json:"path"`
						CID    jsonLink `json:"cid"`
						Prev   jsonLink `json:"prev"`
					} `json:"ops"`
				} `json:"body"`
			} `json:"frame"`
		} `json:"messages"`
	}
	raw := fixtures.Read(t, "fixtures/indigo/cmd/relay/testing/testdata/post_lifecycle.json")
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var inv Inverter
	n := 0
	for _, m := range doc.Messages {
		body := m.Frame.Body
		if m.Frame.Header.T != "#commit" || body.PrevData.C == nil {
			continue
		}
		t.Run(fmt.Sprint(body.Seq), func(t *testing.T) {
			car, err := base64.RawStdEncoding.DecodeString(body.Blocks.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			blocks, err := splitCAR(car)
			if err != nil {
				t.Fatal(err)
			}
			data, err := commitData(blocks[string(body.Commit.C)])
			if err != nil {
				t.Fatal(err)
			}
			var ops []Op
			for _, o := range body.Ops {
				ops = append(ops, Op{Action: actionOf(o.Action), Path: []byte(o.Path), CID: o.CID.C, Prev: o.Prev.C})
			}
			if err := inv.Check(mapGetter(blocks), data, body.PrevData.C, ops); err != nil {
				t.Fatal(err)
			}
		})
		n++
	}
	if n != 6 {
		t.Fatalf("inverted %d commits, want 6", n)
	}
}

// commitData returns the "data" link of a signed commit block.
func commitData(block []byte) (cid.CID, error) {
	var c struct {
		Data cborLink `cbor:"data"`
	}
	if err := cbor.Unmarshal(block, &c); err != nil {
		return nil, err
	}
	if c.Data == nil {
		return nil, errCAR
	}
	return cid.CID(c.Data), nil
}

// cborLink is a DAG-CBOR link (tag 42) decoded by fxamacker/cbor; null →
// nil.
type cborLink []byte

func (l *cborLink) UnmarshalCBOR(b []byte) error {
	if len(b) == 1 && b[0] == 0xf6 {
		*l = nil
		return nil
	}
	var tag cbor.RawTag
	if err := cbor.Unmarshal(b, &tag); err != nil {
		return err
	}
	var raw []byte
	if err := cbor.Unmarshal(tag.Content, &raw); err != nil {
		return err
	}
	if tag.Number != 42 || len(raw) < 2 || raw[0] != 0 {
		return errCAR
	}
	*l = raw[1:]
	return nil
}

// captureCommit is one #commit of the realpds-2 capture, ready to invert.
type captureCommit struct {
	host     int
	seq      int64
	data     cid.CID
	prevData cid.CID
	ops      []Op
	blocks   map[string][]byte
}

type captureBody struct {
	Seq      int64    `cbor:"seq"`
	Commit   cborLink `cbor:"commit"`
	Blocks   []byte   `cbor:"blocks"`
	PrevData cborLink `cbor:"prevData"`
	Ops      []struct {
		Action string   `cbor:"action"`
		Path   string   `cbor:"path"`
		CID    cborLink `cbor:"cid"`
		Prev   cborLink `cbor:"prev"`
	} `cbor:"ops"`
}

// loadCapture reads every #commit with prevData from both hosts of
// captures/realpds-2 (see its FORMAT.md). Decoded once per test binary.
var loadCapture = sync.OnceValues(func() ([]captureCommit, error) {
	var out []captureCommit
	for host := range fixtures.RealPDS2Hosts {
		frames, err := fixtures.CaptureFrames(fixtures.RealPDS2Host(host))
		if err != nil {
			return nil, err
		}
		for _, frame := range frames {
			var hdr struct {
				T string `cbor:"t"`
			}
			rest, err := cbor.UnmarshalFirst(frame, &hdr)
			if err != nil {
				return nil, err
			}
			if hdr.T != "#commit" {
				continue
			}
			var body captureBody
			if err := cbor.Unmarshal(rest, &body); err != nil {
				return nil, err
			}
			if body.PrevData == nil {
				continue
			}
			blocks, err := splitCAR(body.Blocks)
			if err != nil {
				return nil, err
			}
			data, err := commitData(blocks[string(body.Commit)])
			if err != nil {
				return nil, fmt.Errorf("host %d seq %d: %w", host, body.Seq, err)
			}
			cc := captureCommit{host: host, seq: body.Seq, data: data, prevData: cid.CID(body.PrevData), blocks: blocks}
			for _, o := range body.Ops {
				cc.ops = append(cc.ops, Op{Action: actionOf(o.Action), Path: []byte(o.Path), CID: cid.CID(o.CID), Prev: cid.CID(o.Prev)})
			}
			out = append(out, cc)
		}
	}
	return out, nil
})

// Capture: shared/captures/realpds-2 (reference PDS 0.5.35, 2026-11-25).
func TestCaptureInvertsAll(t *testing.T) {
	commits, err := loadCapture()
	if err != nil {
		t.Fatal(err)
	}
	if len(commits) != 15323 {
		t.Fatalf("%d commits with prevData, want 15323", len(commits))
	}
	// Edge cases named in FORMAT.md: the root rising 4 layers over a run of
	// 4 empty intermediates, falling 2 layers, emptying the tree, the commit
	// after an empty tree, mixed multi-op commits, commit block first.
	named := map[[2]int64]string{
		{0, 4424}: "root 2→6 over 4 empty intermediates",
		{0, 4419}: "root layer 5 single create",
		{1, 1773}: "stacked empty intermediates",
		{0, 3457}: "root falls 4→2",
		{0, 337}:  "delete empties tree",
		{1, 260}:  "delete empties tree",
		{0, 371}:  "first commit after empty tree",
		{0, 525}:  "mixed multi-op",
		{0, 1388}: "mixed multi-op",
		{0, 4579}: "mixed multi-op",
		{1, 516}:  "mixed multi-op",
		{1, 717}:  "mixed multi-op",
		{1, 6097}: "mixed multi-op",
		{0, 324}:  "commit block first",
		{1, 391}:  "commit block first",
	}
	seen := 0
	var inv Inverter
	for i := range commits {
		c := &commits[i]
		err := inv.Check(mapGetter(c.blocks), c.data, c.prevData, c.ops)
		if what, ok := named[[2]int64{int64(c.host), c.seq}]; ok {
			seen++
			t.Logf("host %d seq %d (%s): %d ops, %d blocks, err=%v", c.host, c.seq, what, len(c.ops), len(c.blocks), err)
		}
		if err != nil {
			t.Errorf("host %d seq %d: %v", c.host, c.seq, err)
		}
	}
	if seen != len(named) {
		t.Fatalf("found %d of %d named edge cases", seen, len(named))
	}
}
