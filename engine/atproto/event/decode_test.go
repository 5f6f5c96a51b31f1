package event_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/dagcbor"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/internal/dagcbortest"
)

// TestCaptures decodes every frame of shared/captures/realpds-2, checks the
// counts and field-presence facts of its FORMAT.md, re-encodes each frame
// byte for byte, and checks RewriteSeq against a full re-encode.
func TestCaptures(t *testing.T) {
	all := loadCaptures(t)
	type counts struct{ commit, identity, account, sync, prevData, firstCommits int }
	want := []counts{
		{commit: 7703, identity: 699, account: 588, sync: 324, prevData: 7643, firstCommits: 60},
		{commit: 7740, identity: 692, account: 612, sync: 336, prevData: 7680, firstCommits: 60},
	}
	var d event.Decoder
	var m event.Message
	var r car.Reader
	var enc, rw, rwe, full []byte
	for host, frames := range all {
		var got counts
		for i, f := range frames {
			if err := d.Decode(f, &m); err != nil {
				t.Fatalf("host %d frame %d: %v", host, i, err)
			}
			seq, ok := m.Seq()
			if !ok || seq != int64(i+1) {
				t.Fatalf("host %d frame %d: seq %d (%v), want %d", host, i, seq, ok, i+1)
			}
			switch m.Kind {
			case event.KindCommit:
				got.commit++
				c := &m.Commit
				if c.PrevData != nil {
					got.prevData++
				} else if c.Since == nil && len(c.Ops) == 0 {
					got.firstCommits++
				}
				if c.TooBig || c.Rebase || len(c.Blobs) != 0 {
					t.Errorf("host %d seq %d: deprecated fields set", host, seq)
				}
				for _, op := range c.Ops {
					create := string(op.Action) == "create"
					if (op.Prev == nil) != create || (op.CID == nil) != (string(op.Action) == "delete") {
						t.Errorf("host %d seq %d: op shape %s cid=%v prev=%v", host, seq, op.Action, op.CID != nil, op.Prev != nil)
					}
				}
				if err := r.Reset(c.Blocks, car.Options{VerifyHashes: true}); err != nil {
					t.Fatalf("host %d seq %d: CAR: %v", host, seq, err)
				}
				if !r.Root().Equal(c.Commit) {
					t.Errorf("host %d seq %d: CAR root is not the commit", host, seq)
				}
				if _, ok := r.Get(c.Commit); !ok {
					t.Errorf("host %d seq %d: commit block missing", host, seq)
				}
			case event.KindIdentity:
				got.identity++
				if m.Identity.Handle == nil {
					t.Errorf("host %d seq %d: identity without handle", host, seq)
				}
			case event.KindAccount:
				got.account++
				if (m.Account.Status == nil) != m.Account.Active {
					t.Errorf("host %d seq %d: account active=%v status=%q", host, seq, m.Account.Active, m.Account.Status)
				}
			case event.KindSync:
				got.sync++
				if err := r.Reset(m.Sync.Blocks, car.Options{VerifyHashes: true}); err != nil || len(r.Blocks) != 1 {
					t.Fatalf("host %d seq %d: sync CAR: %v", host, seq, err)
				}
			default:
				t.Fatalf("host %d frame %d: kind %v", host, i, m.Kind)
			}

			enc, _ = event.AppendMessage(enc[:0], &m)
			if !bytes.Equal(enc, f) {
				t.Fatalf("host %d seq %d: re-encoding differs:\n got %x\nwant %x", host, seq, enc, f)
			}
			newSeq := seq + 20_000_000_000
			var err error
			if rw, err = event.RewriteSeq(rw[:0], f, newSeq); err != nil {
				t.Fatalf("host %d seq %d: RewriteSeq: %v", host, seq, err)
			}
			full, _ = event.AppendWithSeq(full[:0], &m, newSeq)
			if !bytes.Equal(rw, full) {
				t.Fatalf("host %d seq %d: RewriteSeq differs from re-encode", host, seq)
			}
			// TestRewriteEncodedSeq: the unchecked path gives the same bytes
			// on our own encoding of every capture frame.
			if rwe, err = event.RewriteEncodedSeq(rwe[:0], enc, newSeq); err != nil || !bytes.Equal(rwe, full) {
				t.Fatalf("host %d seq %d: RewriteEncodedSeq differs (%v)", host, seq, err)
			}
		}
		if got != want[host] {
			t.Errorf("host %d: counts %+v, want %+v", host, got, want[host])
		}
		if n := got.commit + got.identity + got.account + got.sync; n != len(frames) {
			t.Errorf("host %d: %d frames, %d classified", host, len(frames), n)
		}
	}
}

// TestRelayFixtures: every frame of indigo's relay scenario files decodes
// and re-encodes byte for byte; RewriteSeq agrees with a re-encode.
func TestRelayFixtures(t *testing.T) {
	var d event.Decoder
	var m event.Message
	for _, ff := range relayFixtureFrames(t) {
		t.Run(fmt.Sprintf("%s/%d", ff.file, ff.index), func(t *testing.T) {
			if err := d.Decode(ff.frame, &m); err != nil {
				t.Fatal(err)
			}
			if !m.Kind.HasSeq() {
				t.Fatalf("kind %v", m.Kind)
			}
			enc, err := event.AppendMessage(nil, &m)
			if err != nil || !bytes.Equal(enc, ff.frame) {
				t.Fatalf("re-encoding differs (%v):\n got %x\nwant %x", err, enc, ff.frame)
			}
			for _, seq := range []int64{1, 23, 24, 1 << 40} {
				rw, err := event.RewriteSeq(nil, ff.frame, seq)
				if err != nil {
					t.Fatal(err)
				}
				full, _ := event.AppendWithSeq(nil, &m, seq)
				if !bytes.Equal(rw, full) {
					t.Fatalf("seq %d: RewriteSeq differs from re-encode", seq)
				}
			}
		})
	}
}

// frame builds header ‖ body from atproto-JSON-like Go values.
func frame(t testing.TB, header, body map[string]any) []byte {
	t.Helper()
	b := appendValue(t, nil, header)
	return appendValue(t, b, body)
}

func appendValue(t testing.TB, dst []byte, v any) []byte {
	t.Helper()
	out, err := dagcbortest.Append(dst, v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var (
	testCID  = cid.Sum(cid.CodecDagCBOR, []byte("commit"))
	testCID2 = cid.Sum(cid.CodecDagCBOR, []byte("record"))
)

func commitBody() map[string]any {
	root := testCID
	blocks := car.AppendBlock(car.AppendHeader(nil, root), root, []byte{0xa0})
	return map[string]any{
		"seq": 7, "repo": "did:plc:abc", "commit": root, "rev": "3lmxjza3h2i27", "since": nil,
		"blocks": blocks, "time": "2026-11-25T22:17:57.832Z", "blobs": []any{}, "rebase": false, "tooBig": false,
		"ops": []any{map[string]any{"action": "create", "path": "app.bsky.feed.post/3lmxjza3h2i27", "cid": testCID2}},
	}
}

var commitHeader = map[string]any{"op": 1, "t": "#commit"}

func TestAbsentVersusNull(t *testing.T) {
	var d event.Decoder
	var m event.Message
	decode := func(header, body map[string]any) error {
		t.Helper()
		return d.Decode(frame(t, header, body), &m)
	}

	b := commitBody()
	if err := decode(commitHeader, b); err != nil {
		t.Fatal(err)
	}
	if m.Commit.Since != nil || m.Commit.PrevData != nil || m.Commit.Ops[0].Prev != nil || m.Commit.Ops[0].CID == nil {
		t.Errorf("since null / prevData absent / prev absent not preserved: %+v", m.Commit)
	}
	b["since"], b["prevData"] = "3lmxjza3h2i26", testCID2
	b["ops"] = []any{map[string]any{"action": "delete", "path": "a/b", "cid": nil, "prev": testCID2}}
	if err := decode(commitHeader, b); err != nil {
		t.Fatal(err)
	}
	if string(m.Commit.Since) != "3lmxjza3h2i26" || !m.Commit.PrevData.Equal(testCID2) ||
		m.Commit.Ops[0].CID != nil || !m.Commit.Ops[0].Prev.Equal(testCID2) {
		t.Errorf("since text / prevData / delete op not decoded: %+v", m.Commit)
	}

	fieldErr := func(name string, body map[string]any, field string, reason error) {
		t.Helper()
		err := decode(commitHeader, body)
		var fe *event.FieldError
		if !errors.As(err, &fe) || fe.Field != field || !errors.Is(err, reason) {
			t.Errorf("%s: got %v, want %s %v", name, err, field, reason)
		}
	}
	without := func(k string) map[string]any { b := commitBody(); delete(b, k); return b }
	with := func(k string, v any) map[string]any { b := commitBody(); b[k] = v; return b }
	fieldErr("since absent", without("since"), "since", event.ErrMissingField)
	fieldErr("prevData null", with("prevData", nil), "prevData", event.ErrFieldType)
	fieldErr("repo null", with("repo", nil), "repo", event.ErrFieldType)
	fieldErr("repo int", with("repo", 5), "repo", event.ErrFieldType)
	fieldErr("seq text", with("seq", "5"), "seq", event.ErrFieldType)
	fieldErr("blocks text", with("blocks", "x"), "blocks", event.ErrFieldType)
	fieldErr("commit bytes", with("commit", []byte{1}), "commit", event.ErrFieldType)
	fieldErr("time absent", without("time"), "time", event.ErrMissingField)
	fieldErr("ops absent", without("ops"), "ops", event.ErrMissingField)
	fieldErr("op cid absent", with("ops", []any{map[string]any{"action": "create", "path": "a/b"}}), "ops[0].cid", event.ErrMissingField)
	fieldErr("op prev null", with("ops", []any{map[string]any{"action": "delete", "path": "a/b", "cid": nil, "prev": nil}}), "ops[0].prev", event.ErrFieldType)
	fieldErr("op not a map", with("ops", []any{1}), "ops", event.ErrFieldType)
	fieldErr("blobs not links", with("blobs", []any{1}), "blobs", event.ErrFieldType)
	fieldErr("tooBig int", with("tooBig", 0), "tooBig", event.ErrFieldType)

	// Deprecated fields may be absent; blobs may be null.
	for _, k := range []string{"blobs", "rebase", "tooBig"} {
		if err := decode(commitHeader, without(k)); err != nil {
			t.Errorf("%s absent: %v", k, err)
		}
	}
	if err := decode(commitHeader, with("blobs", nil)); err != nil {
		t.Errorf("blobs null: %v", err)
	}
	if err := decode(commitHeader, with("blobs", []any{testCID2})); err != nil || len(m.Commit.Blobs) != 1 {
		t.Errorf("blobs with a link: %v", err)
	}

	idHeader := map[string]any{"op": 1, "t": "#identity"}
	id := map[string]any{"seq": 1, "did": "did:plc:abc", "time": "2026-11-25T22:17:57.832Z"}
	if err := decode(idHeader, id); err != nil || m.Identity.Handle != nil {
		t.Errorf("identity without handle: %v %q", err, m.Identity.Handle)
	}
	id["handle"] = "a.test"
	if err := decode(idHeader, id); err != nil || string(m.Identity.Handle) != "a.test" {
		t.Errorf("identity with handle: %v", err)
	}
	id["handle"] = nil
	if err := decode(idHeader, id); !errors.Is(err, event.ErrFieldType) {
		t.Errorf("identity handle null: %v", err)
	}
	accHeader := map[string]any{"op": 1, "t": "#account"}
	acc := map[string]any{"seq": 1, "did": "did:plc:abc", "time": "2026-11-25T22:17:57.832Z", "active": true}
	if err := decode(accHeader, acc); err != nil || m.Account.Status != nil || !m.Account.Active {
		t.Errorf("account without status: %v", err)
	}
	acc["active"], acc["status"] = false, "deactivated"
	if err := decode(accHeader, acc); err != nil || string(m.Account.Status) != "deactivated" {
		t.Errorf("account with status: %v", err)
	}
	delete(acc, "active")
	if err := decode(accHeader, acc); !errors.Is(err, event.ErrMissingField) {
		t.Errorf("account without active: %v", err)
	}
}

func TestUnknownTypes(t *testing.T) {
	var d event.Decoder
	var m event.Message
	body := map[string]any{"seq": 1, "did": "did:plc:abc", "unknown": []any{1, "x"}}
	for _, h := range []map[string]any{
		{"op": 1, "t": "#handle"}, {"op": 1, "t": "#migrate"}, {"op": 1, "t": "#tombstone"},
		{"op": 1, "t": "#future"}, {"op": 2, "t": "#commit"}, {"op": 7},
	} {
		if err := d.Decode(frame(t, h, body), &m); err != nil || m.Kind != event.KindUnknown {
			t.Errorf("%v: kind %v, err %v", h, m.Kind, err)
		}
	}
}

func TestInfoAndError(t *testing.T) {
	var d event.Decoder
	var m event.Message
	f := event.AppendError(nil, &event.ErrorFrame{Error: []byte("FutureCursor")})
	if !bytes.HasPrefix(f, []byte{0xa1, 0x62, 0x6f, 0x70, 0x20}) || dagcbor.Validate(f[5:]) != nil {
		t.Fatalf("error frame %x", f)
	}
	if err := d.Decode(f, &m); err != nil || m.Kind != event.KindError || string(m.Error.Error) != "FutureCursor" || m.Error.Message != nil {
		t.Fatalf("error frame: %v %+v", err, m.Error)
	}
	in := event.Info{Name: []byte("OutdatedCursor"), Message: []byte("too old")}
	f = event.AppendInfo(nil, &in)
	if err := d.Decode(f, &m); err != nil || m.Kind != event.KindInfo || string(m.Info.Message) != "too old" {
		t.Fatalf("info frame: %v %+v", err, m.Info)
	}
	if again, _ := event.AppendMessage(nil, &m); !bytes.Equal(again, f) {
		t.Error("info re-encoding differs")
	}
	if _, err := event.AppendWithSeq(nil, &m, 5); !errors.Is(err, event.ErrNoSeq) {
		t.Errorf("AppendWithSeq(info) = %v", err)
	}
	if _, err := event.RewriteSeq(nil, f, 5); !errors.Is(err, event.ErrNotRewritable) {
		t.Errorf("RewriteSeq(info) = %v", err)
	}
	// Key order of envelopes is free; both orders decode.
	if err := d.Decode(frame(t, map[string]any{"op": -1}, map[string]any{"message": "m", "error": "E"}), &m); err != nil {
		t.Error(err)
	}
}

func TestMalformed(t *testing.T) {
	good := frame(t, commitHeader, commitBody())
	hdrLen, _ := dagcbor.Envelope(good)
	body := good[hdrLen:]
	header := good[:hdrLen]
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	// {"seq": 1, "seq": 2} style duplicate inside an otherwise fine body.
	dupBody := dagcbor.AppendMapHeader(nil, 2)
	dupBody = dagcbor.AppendInt(dagcbor.AppendText(dupBody, "did"), 1)
	dupBody = dagcbor.AppendInt(dagcbor.AppendText(dupBody, "did"), 2)
	unknownFloat := frame(t, map[string]any{"op": 1, "t": "#identity"}, map[string]any{"seq": 1, "did": "d", "time": "t"})
	unknownFloat[len(hdrIdentity)]++ // one more pair
	unknownFloat = append(unknownFloat, 0x61, 'x', 0xfb, 0, 0, 0, 0, 0, 0, 0, 0)
	cases := []struct {
		name string
		f    []byte
		want error
	}{
		{"empty", nil, event.ErrCBOR},
		{"header only", header, event.ErrCBOR},
		{"truncated body", good[:len(good)-1], event.ErrCBOR},
		{"trailing", cat(good, []byte{0}), event.ErrTrailing},
		{"header not map", cat([]byte{0x01}, body), event.ErrHeader},
		{"header without op", cat(appendValue(t, nil, map[string]any{"t": "#commit"}), body), event.ErrHeader},
		{"op 1 without t", cat(appendValue(t, nil, map[string]any{"op": 1}), body), event.ErrHeader},
		{"t not text", cat(appendValue(t, nil, map[string]any{"op": 1, "t": 5}), body), event.ErrHeader},
		{"body not map", cat(header, []byte{0x80}), event.ErrBody},
		{"dup key", cat([]byte(hdrIdentity), dupBody), event.ErrDupKey},
		{"float in unknown field", unknownFloat, event.ErrCBOR},
		{"indefinite body", cat(header, []byte{0xbf, 0xff}), event.ErrCBOR},
		{"tag 1 in body", cat(header, []byte{0xa1, 0x61, 'x', 0xc1, 0x00}), event.ErrCBOR},
		{"int key", cat(header, []byte{0xa1, 0x01, 0x00}), event.ErrCBOR},
	}
	var d event.Decoder
	var m event.Message
	for _, c := range cases {
		if err := d.Decode(c.f, &m); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	if err := d.Decode(good, &m); err != nil {
		t.Fatalf("good frame: %v", err)
	}
}

const hdrIdentity = "\xa2\x61t\x69#identity\x62op\x01"

func TestLimits(t *testing.T) {
	var d event.Decoder
	var m event.Message
	huge := make([]byte, event.DefaultMaxFrameBytes+1)
	if err := d.Decode(huge, &m); !errors.Is(err, event.ErrFrameTooLarge) {
		t.Errorf("huge frame: %v", err)
	}
	ops := make([]any, event.DefaultMaxOps+1)
	for i := range ops {
		ops[i] = map[string]any{"action": "create", "path": "a/b", "cid": testCID2}
	}
	b := commitBody()
	b["ops"] = ops
	if err := d.Decode(frame(t, commitHeader, b), &m); !errors.Is(err, event.ErrTooManyOps) {
		t.Errorf("201 ops: %v", err)
	}
	b["ops"] = ops[:event.DefaultMaxOps]
	if err := d.Decode(frame(t, commitHeader, b), &m); err != nil || len(m.Commit.Ops) != event.DefaultMaxOps {
		t.Errorf("200 ops: %v", err)
	}
	b = commitBody()
	b["blocks"] = make([]byte, event.DefaultMaxCommitBlocksBytes+1)
	if err := d.Decode(frame(t, commitHeader, b), &m); !errors.Is(err, event.ErrBlocksTooLarge) {
		t.Errorf("commit blocks: %v", err)
	}
	sync := map[string]any{"seq": 1, "did": "did:plc:abc", "rev": "3lmxjza3h2i27", "time": "t",
		"blocks": make([]byte, event.DefaultMaxSyncBlocksBytes+1)}
	syncHeader := map[string]any{"op": 1, "t": "#sync"}
	if err := d.Decode(frame(t, syncHeader, sync), &m); !errors.Is(err, event.ErrBlocksTooLarge) {
		t.Errorf("sync blocks: %v", err)
	}
	// Custom limits apply; zero fields keep their defaults.
	small := event.Decoder{Limits: event.Limits{MaxOps: 1, MaxFrameBytes: 100_000}}
	b = commitBody()
	b["ops"] = ops[:2]
	if err := small.Decode(frame(t, commitHeader, b), &m); !errors.Is(err, event.ErrTooManyOps) {
		t.Errorf("custom MaxOps: %v", err)
	}
	if err := small.Decode(make([]byte, 100_001), &m); !errors.Is(err, event.ErrFrameTooLarge) {
		t.Errorf("custom MaxFrameBytes: %v", err)
	}
	if err := small.Decode(frame(t, syncHeader, sync), &m); !errors.Is(err, event.ErrBlocksTooLarge) {
		t.Errorf("default sync limit under custom Limits: %v", err)
	}
}

func TestRewriteSeqErrors(t *testing.T) {
	good := frame(t, commitHeader, commitBody())
	if _, err := event.RewriteSeq(nil, good, 0); !errors.Is(err, event.ErrSeq) {
		t.Errorf("seq 0: %v", err)
	}
	nonCanon := frame(t, map[string]any{"t": "#commit", "op": 1}, commitBody())
	nonCanon = append(nonCanon[:len(hdrCommit)], append([]byte{0xb8, nonCanon[len(hdrCommit)] & 0x1f}, nonCanon[len(hdrCommit)+1:]...)...)
	if _, err := event.RewriteSeq(nil, nonCanon, 5); !errors.Is(err, dagcbor.ErrNonCanonicalInt) {
		t.Errorf("non-canonical body: %v", err)
	}
	b := commitBody()
	delete(b, "seq")
	if _, err := event.RewriteSeq(nil, frame(t, commitHeader, b), 5); !errors.Is(err, event.ErrNoSeqField) {
		t.Errorf("no seq: %v", err)
	}
	b["seq"] = -4
	if _, err := event.RewriteSeq(nil, frame(t, commitHeader, b), 5); !errors.Is(err, event.ErrNoSeqField) {
		t.Errorf("negative seq: %v", err)
	}
	if out, err := event.RewriteSeq([]byte("x"), []byte{0xa1, 0x62, 'o', 'p', 0x20, 0xa0}, 5); !errors.Is(err, event.ErrNotRewritable) || string(out) != "x" {
		t.Errorf("error frame: %v %q", err, out)
	}
}

const hdrCommit = "\xa2\x61t\x67#commit\x62op\x01"
