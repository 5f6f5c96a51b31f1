package jetstream

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/event"
)

// TestStamper: the first event of a second gets its millisecond × 1000,
// later ones the next free microsecond, capped at the second's end; a new
// millisecond far enough ahead restarts at its own value.
func TestStamper(t *testing.T) {
	var s stamper
	f := func(ms, want int64) {
		t.Helper()
		if got := s.next(ms); got != want {
			t.Fatalf("next(%d) = %d, want %d", ms, got, want)
		}
	}
	f(5_004, 5_004_000)
	f(5_004, 5_004_001)
	f(5_004, 5_004_002)
	f(5_005, 5_005_000)
	f(5_005, 5_005_001)
	// A burst past the next millisecond keeps counting.
	for i := int64(2); i < 1000; i++ {
		f(5_005, 5_005_000+i)
	}
	f(5_006, 5_006_000)
	// The last microsecond of the second repeats only when full.
	s = stamper{}
	f(5_999, 5_999_000)
	for i := int64(1); i < 1000; i++ {
		f(5_999, 5_999_000+i)
	}
	f(5_999, 5_999_999)
	f(6_000, 6_000_000)
	// A clock step back never makes a stamp go back.
	f(5_500, 6_000_001)
}

// TestConverterJSON pins the exact bytes of every event shape against
// Jetstream's field names and order.
func TestConverterJSON(t *testing.T) {
	const did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	rec := postRecord("hello")
	var c converter
	f := func(frame []byte, ms int64, want ...string) {
		t.Helper()
		if err := c.load(7, ms, frame); err != nil {
			t.Fatalf("load: %v", err)
		}
		if len(c.cands) != len(want) {
			t.Fatalf("%d candidates, want %d", len(c.cands), len(want))
		}
		for i := range c.cands {
			got, why := c.appendJSON(nil, i)
			if why != skipNone {
				t.Fatalf("candidate %d skipped: %v", i, why)
			}
			if string(got) != want[i] {
				t.Fatalf("candidate %d:\ngot  %s\nwant %s", i, got, want[i])
			}
		}
	}
	cidStr := func(rec []byte) string {
		b := commitFrame(did, "r", testOp{"create", "a/b", rec})
		var m event.Message
		var d event.Decoder
		if err := d.Decode(b, &m); err != nil {
			t.Fatal(err)
		}
		return m.Commit.Ops[0].CID.String()
	}(rec)
	f(commitFrame(did, "3lbwsi4hzvk2a",
		testOp{"create", "app.bsky.feed.post/3lbwsi4hzog2a", rec},
		testOp{"update", "app.bsky.feed.post/3lbwsi4hzog2b", rec},
		testOp{"delete", "app.bsky.feed.like/3lbwsi4hzog2c", nil}),
		1_764_109_077_806,
		`{"did":"`+did+`","time_us":1764109077806000,"kind":"commit","commit":{"rev":"3lbwsi4hzvk2a","operation":"create","collection":"app.bsky.feed.post","rkey":"3lbwsi4hzog2a","record":{"$type":"app.bsky.feed.post","createdAt":"2026-11-25T22:17:57.806Z","text":"hello"},"cid":"`+cidStr+`"}}`,
		`{"did":"`+did+`","time_us":1764109077806001,"kind":"commit","commit":{"rev":"3lbwsi4hzvk2a","operation":"update","collection":"app.bsky.feed.post","rkey":"3lbwsi4hzog2b","record":{"$type":"app.bsky.feed.post","createdAt":"2026-11-25T22:17:57.806Z","text":"hello"},"cid":"`+cidStr+`"}}`,
		`{"did":"`+did+`","time_us":1764109077806002,"kind":"commit","commit":{"rev":"3lbwsi4hzvk2a","operation":"delete","collection":"app.bsky.feed.like","rkey":"3lbwsi4hzog2c"}}`)
	f(identityFrame(did, "alice.test"), 1_764_109_077_806,
		`{"did":"`+did+`","time_us":1764109077806003,"kind":"identity","identity":{"did":"`+did+`","handle":"alice.test","seq":1,"time":"2026-11-25T22:17:57.806Z"}}`)
	f(identityFrame(did, ""), 1_764_109_077_900,
		`{"did":"`+did+`","time_us":1764109077900000,"kind":"identity","identity":{"did":"`+did+`","seq":1,"time":"2026-11-25T22:17:57.806Z"}}`)
	f(accountFrame(did, false, "deactivated"), 1_764_109_077_900,
		`{"did":"`+did+`","time_us":1764109077900001,"kind":"account","account":{"active":false,"did":"`+did+`","seq":1,"status":"deactivated","time":"2026-11-25T22:17:57.806Z"}}`)
	f(accountFrame(did, true, ""), 1_764_109_078_000,
		`{"did":"`+did+`","time_us":1764109078000000,"kind":"account","account":{"active":true,"did":"`+did+`","seq":1,"time":"2026-11-25T22:17:57.806Z"}}`)
	// #sync yields nothing, as in Jetstream.
	f(event.AppendSync(nil, &event.Sync{Seq: 1, DID: []byte(did), Rev: []byte("r"), Blocks: []byte{0}, Time: []byte("t")}), 1_764_109_078_000)
}

// TestConverterSkips: ops whose record cannot be shown are skipped, each
// for its own reason, and keep their stamps.
func TestConverterSkips(t *testing.T) {
	const did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	good, other := postRecord("ok"), postRecord("no")
	float := []byte{0xa1, 0x61, 'a', 0xf9, 0x3c, 0x00} // {"a": 1.0 as float16}
	goodCID, otherCID, floatCID := cid.Sum(cid.CodecDagCBOR, good), cid.Sum(cid.CodecDagCBOR, other), cid.Sum(cid.CodecDagCBOR, float)
	root := cid.Sum(cid.CodecDagCBOR, []byte("commit"))
	blocks := car.AppendHeader(nil, root)
	blocks = car.AppendBlock(blocks, goodCID, good)
	blocks = car.AppendBlock(blocks, floatCID, float)
	blocks = car.AppendBlock(blocks, otherCID, good) // a block whose data is not what its CID names
	op := func(path string, c cid.CID) event.Op {
		return event.Op{Action: []byte("create"), Path: []byte("app.bsky.feed.post/" + path), CID: c}
	}
	frame := event.AppendCommit(nil, &event.Commit{
		Seq: 1, Repo: []byte(did), Commit: root, Rev: []byte("r"), Time: []byte("t"), Blocks: blocks,
		Ops: []event.Op{
			op("a", goodCID),
			op("b", floatCID),
			op("c", otherCID),
			op("d", cid.Sum(cid.CodecDagCBOR, []byte("absent"))),
			op("e", nil),
		},
	})
	var c converter
	if err := c.load(1, 1000, frame); err != nil {
		t.Fatal(err)
	}
	want := []skip{skipNone, skipBadRecord, skipCIDMatch, skipNoBlock, skipNoCID}
	if len(c.cands) != len(want) {
		t.Fatalf("%d candidates, want %d", len(c.cands), len(want))
	}
	for i, w := range want {
		out, why := c.appendJSON([]byte("x"), i)
		if why != w {
			t.Errorf("op %d: %v, want %v", i, why, w)
		}
		if why != skipNone && string(out) != "x" {
			t.Errorf("op %d: skipped output not cut back: %q", i, out)
		}
		if c.cands[i].timeUS != 1_000_000+int64(i) {
			t.Errorf("op %d stamped %d", i, c.cands[i].timeUS)
		}
	}
	// A CAR that does not parse skips every record op.
	bad := event.AppendCommit(nil, &event.Commit{
		Seq: 1, Repo: []byte(did), Commit: root, Rev: []byte("r"), Time: []byte("t"), Blocks: []byte{0xff},
		Ops: []event.Op{op("a", goodCID)},
	})
	if err := c.load(2, 2000, bad); err != nil {
		t.Fatal(err)
	}
	if _, why := c.appendJSON(nil, 0); why != skipBadCAR {
		t.Errorf("bad CAR: %v", why)
	}
}

// captureFrames reads every frame of the realpds-2 capture, host 0 then
// host 1.
func captureFrames(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, name := range []string{"frames-0.bin.zst", "frames-1.bin.zst"} {
		raw, err := readFixture("captures/realpds-2/" + name)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := zstd.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(zr)
		for {
			n, err := binary.ReadUvarint(r)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(r, b); err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
		zr.Close()
	}
	return out
}

// TestConverterCapture converts every event of the realpds-2 capture
// (internal/testdata/captures/realpds-2, FORMAT.md "Counts") and checks one
// Jetstream event per record op, per #identity and per #account, with no
// op skipped, by action and collection.
func TestConverterCapture(t *testing.T) {
	frames := captureFrames(t)
	var c converter
	counts := map[string]int{}
	var buf []byte
	for i, f := range frames {
		if err := c.load(uint64(i+1), int64(i), f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		for j := range c.cands {
			var why skip
			buf, why = c.appendJSON(buf[:0], j)
			if why != skipNone {
				t.Fatalf("frame %d op %d skipped: %v", i, j, why)
			}
			cd := &c.cands[j]
			key := cd.kind.String()
			if cd.kind == kindCommit {
				key += " " + cd.operation + " " + string(cd.collection)
			}
			counts[key]++
		}
	}
	want := map[string]int{
		"commit create app.bsky.feed.post":     9623,
		"commit create app.bsky.feed.like":     2614,
		"commit create app.bsky.graph.follow":  1715,
		"commit create app.bsky.actor.profile": 120,
		"commit update app.bsky.actor.profile": 1390,
		"commit update app.bsky.feed.post":     841,
		"commit delete app.bsky.feed.post":     1570,
		"commit delete app.bsky.feed.like":     440,
		"commit delete app.bsky.graph.follow":  303,
		"identity":                             1391,
		"account":                              1200,
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s: %d events, want %d", k, counts[k], n)
		}
	}
	if len(counts) != len(want) {
		t.Errorf("unexpected event classes: %v", counts)
	}
}
