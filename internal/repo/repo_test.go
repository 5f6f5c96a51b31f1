package repo

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/dagcbor"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/atproto/mst"
	"github.com/atrelay/relay/internal/dagcbortest"
	icomatproto "github.com/bluesky-social/indigo/api/atproto"
	iatcrypto "github.com/bluesky-social/indigo/atproto/atcrypto"
	imst "github.com/bluesky-social/indigo/atproto/repo/mst"
	"github.com/fxamacker/cbor/v2"
	gocid "github.com/ipfs/go-cid"
)

const testDID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"

// emptyTree is the data root of a repository without records.
var emptyTree = cid.MustDecode("bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm")

// fixedClock returns a clock that advances one second per call from a
// fixed instant, so revs and times are reproducible.
func fixedClock() func() time.Time {
	t := time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(time.Second)
		return t
	}
}

func newRepo(t *testing.T, c atcrypto.Curve) *Repo {
	t.Helper()
	key, err := atcrypto.GeneratePrivateKey(c)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(testDID, key, Options{Now: fixedClock(), ClockID: 7})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// commitFields is the decoded commit object (test-only decoding with
// fxamacker/cbor, independent of the code under test).
type commitFields struct {
	DID     string   `cbor:"did"`
	Rev     string   `cbor:"rev"`
	Sig     []byte   `cbor:"sig"`
	Data    cbor.Tag `cbor:"data"`
	Prev    *int     `cbor:"prev"`
	Version int      `cbor:"version"`
}

// checkCommit verifies everything a sync-1.1 consumer checks on ev, given
// the previous commit (nil for the first), and cross-checks with indigo.
func checkCommit(t *testing.T, r *Repo, ev, prev *event.Commit, prevDataWant cid.CID) {
	t.Helper()
	var rd car.Reader
	if err := rd.Reset(ev.Blocks, car.Options{VerifyHashes: true}); err != nil {
		t.Fatalf("CAR: %v", err)
	}
	if !rd.Root().Equal(ev.Commit) {
		t.Fatalf("CAR root %s != commit %s", rd.Root(), ev.Commit)
	}
	block, ok := rd.Get(ev.Commit)
	if !ok {
		t.Fatal("commit block missing")
	}
	if err := dagcbor.Validate(block); err != nil {
		t.Fatalf("commit block not canonical: %v", err)
	}
	var cf commitFields
	if err := cbor.Unmarshal(block, &cf); err != nil {
		t.Fatal(err)
	}
	if cf.DID != testDID || cf.Rev != string(ev.Rev) || cf.Version != 3 || cf.Prev != nil || len(cf.Sig) != 64 {
		t.Fatalf("commit fields %+v", cf)
	}
	data := r.Data()
	if !bytes.Equal(AppendCommitObject(nil, []byte(cf.DID), []byte(cf.Rev), data, cf.Sig), block) {
		t.Fatal("commit block is not the canonical encoding of its fields")
	}
	if _, ok := rd.Get(data); !ok {
		t.Fatal("CAR lacks the MST root node")
	}
	unsigned := AppendCommitObject(nil, []byte(cf.DID), []byte(cf.Rev), data, nil)
	if err := r.PublicKey().Verify(unsigned, cf.Sig); err != nil {
		t.Fatalf("signature: %v", err)
	}
	if prev == nil {
		if ev.Since != nil || ev.PrevData != nil {
			t.Fatalf("first commit has since %q prevData %v", ev.Since, ev.PrevData)
		}
	} else {
		if !bytes.Equal(ev.Since, prev.Rev) || !ev.PrevData.Equal(prevDataWant) {
			t.Fatalf("since %q prevData %s, want %q %s", ev.Since, ev.PrevData, prev.Rev, prevDataWant)
		}
		if bytes.Compare(ev.Rev, prev.Rev) <= 0 {
			t.Fatalf("rev %q not after %q", ev.Rev, prev.Rev)
		}
		ops := make([]mst.Op, len(ev.Ops))
		for i, op := range ev.Ops {
			ops[i] = mst.Op{Action: actionOf(string(op.Action)), Path: op.Path, CID: op.CID, Prev: op.Prev}
		}
		var inv mst.Inverter
		if err := inv.Check(rd.Get, data, ev.PrevData, ops); err != nil {
			t.Fatalf("inversion from the CAR alone: %v", err)
		}
	}
	for _, op := range ev.Ops {
		switch string(op.Action) {
		case "create":
			if op.CID == nil || op.Prev != nil {
				t.Fatalf("create op shape %+v", op)
			}
		case "update":
			if op.CID == nil || op.Prev == nil || op.CID.Equal(op.Prev) {
				t.Fatalf("update op shape %+v", op)
			}
		case "delete":
			if op.CID != nil || op.Prev == nil {
				t.Fatalf("delete op shape %+v", op)
			}
		}
		if op.CID != nil {
			if _, ok := rd.Get(op.CID); !ok {
				t.Fatalf("record block of %s missing", op.Path)
			}
		}
	}
	indigoCheck(t, r, ev, unsigned, cf.Sig)
}

// indigoCheck decodes the frame with indigo's cbor-gen types, verifies the
// signature with indigo's atcrypto and recomputes the data root with
// indigo's MST from the repository's full contents (test-only oracle).
func indigoCheck(t *testing.T, r *Repo, ev *event.Commit, unsigned, sig []byte) {
	t.Helper()
	frame := event.AppendCommit(nil, ev)
	n, err := dagcbor.ValidateFirst(frame)
	if err != nil {
		t.Fatal(err)
	}
	var msg icomatproto.SyncSubscribeRepos_Commit
	if err := msg.UnmarshalCBOR(bytes.NewReader(frame[n:])); err != nil {
		t.Fatalf("indigo decode: %v", err)
	}
	if msg.Rev != string(ev.Rev) || msg.Repo != testDID || len(msg.Ops) != len(ev.Ops) {
		t.Fatalf("indigo sees rev %q repo %q ops %d", msg.Rev, msg.Repo, len(msg.Ops))
	}
	pub, err := iatcrypto.ParsePublicDIDKey(r.PublicKey().DIDKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.HashAndVerify(unsigned, sig); err != nil {
		t.Fatalf("indigo signature check: %v", err)
	}
	m := map[string]gocid.Cid{}
	for k, v := range r.tree.All() {
		c, err := gocid.Cast(v)
		if err != nil {
			t.Fatal(err)
		}
		m[string(k)] = c
	}
	tree, err := imst.LoadTreeFromMap(m)
	if err != nil {
		t.Fatal(err)
	}
	root, err := tree.RootCID()
	if err != nil || !bytes.Equal(root.Bytes(), r.Data()) {
		t.Fatalf("indigo MST root %v (%v), ours %s", root, err, r.Data())
	}
}

func actionOf(s string) mst.Action {
	switch s {
	case "create":
		return mst.ActionCreate
	case "update":
		return mst.ActionUpdate
	case "delete":
		return mst.ActionDelete
	}
	return 0
}

// randomBatch picks 1..5 writes on distinct paths: creates of posts, and
// updates and deletes of existing records.
func randomBatch(rng *rand.Rand, r *Repo, live map[string]bool) []Write {
	n := 1 + rng.IntN(5)
	used := map[string]bool{}
	var ws []Write
	for len(ws) < n {
		var path string
		for p := range live {
			path = p
			break
		}
		switch k := rng.IntN(4); {
		case k < 2 || path == "" || used[path]:
			rkey := r.NextTID()
			ws = append(ws, Write{Action: mst.ActionCreate, Collection: "app.bsky.feed.post", RKey: rkey,
				Record: PostRecord(fmt.Sprintf("post %d", rng.Int()), time.Unix(int64(rng.IntN(1e9)), 0))})
			used["app.bsky.feed.post/"+rkey] = true
		case k == 2:
			ws = append(ws, Write{Action: mst.ActionUpdate, Collection: "app.bsky.feed.post", RKey: path[len("app.bsky.feed.post/"):],
				Record: PostRecord(fmt.Sprintf("edit %d", rng.Int()), time.Unix(0, 0))})
			used[path] = true
		default:
			ws = append(ws, Write{Action: mst.ActionDelete, Collection: "app.bsky.feed.post", RKey: path[len("app.bsky.feed.post/"):]})
			used[path] = true
		}
	}
	for _, w := range ws {
		p := w.Collection + "/" + w.RKey
		live[p] = w.Action != mst.ActionDelete
		if !live[p] {
			delete(live, p)
		}
	}
	return ws
}

func TestApplyProducesValidCommits(t *testing.T) {
	for _, c := range []atcrypto.Curve{atcrypto.P256, atcrypto.K256} {
		t.Run(c.String(), func(t *testing.T) {
			r := newRepo(t, c)
			first, err := r.Apply(nil)
			if err != nil {
				t.Fatal(err)
			}
			if !r.Data().Equal(emptyTree) || len(first.Ops) != 0 {
				t.Fatalf("genesis data %s ops %d", r.Data(), len(first.Ops))
			}
			checkCommit(t, r, first, nil, nil)
			rng := rand.New(rand.NewPCG(1, uint64(c)))
			live := map[string]bool{}
			prev, prevData := first, r.Data()
			for i := 0; i < 150; i++ {
				ev, err := r.Apply(randomBatch(rng, r, live))
				if err != nil {
					t.Fatalf("batch %d: %v", i, err)
				}
				checkCommit(t, r, ev, prev, prevData)
				prev, prevData = ev, r.Data()
			}
			if r.Len() != len(live) {
				t.Fatalf("Len %d, want %d", r.Len(), len(live))
			}
		})
	}
}

func TestEmptyCommitAfterWrites(t *testing.T) {
	r := newRepo(t, atcrypto.K256)
	first, _ := r.Apply(nil)
	ev, err := r.Apply([]Write{{Action: mst.ActionCreate, Collection: "app.bsky.feed.like", RKey: r.NextTID(), Record: PostRecord("x", time.Unix(0, 0))}})
	if err != nil {
		t.Fatal(err)
	}
	checkCommit(t, r, ev, first, emptyTree)
	data := r.Data()
	empty, err := r.Apply(nil)
	if err != nil {
		t.Fatal(err)
	}
	checkCommit(t, r, empty, ev, data)
	if !r.Data().Equal(data) {
		t.Fatal("empty commit changed the tree")
	}
}

func TestExportCARWalksToDataRoot(t *testing.T) {
	r := newRepo(t, atcrypto.P256)
	if _, err := r.ExportCAR(); !errors.Is(err, ErrNoCommit) {
		t.Fatalf("export before commit: %v", err)
	}
	r.Apply(nil)
	rng := rand.New(rand.NewPCG(3, 4))
	live := map[string]bool{}
	for i := 0; i < 60; i++ {
		if _, err := r.Apply(randomBatch(rng, r, live)); err != nil {
			t.Fatal(err)
		}
	}
	// Two paths holding one record: the block is exported once.
	dup := PostRecord("same", time.Unix(5, 0))
	if _, err := r.Apply([]Write{
		{Action: mst.ActionCreate, Collection: "app.bsky.feed.post", RKey: "dupa", Record: dup},
		{Action: mst.ActionCreate, Collection: "app.bsky.feed.post", RKey: "dupb", Record: dup},
	}); err != nil {
		t.Fatal(err)
	}
	out, err := r.ExportCAR()
	if err != nil {
		t.Fatal(err)
	}
	var rd car.Reader
	if err := rd.Reset(out, car.Options{VerifyHashes: true}); err != nil {
		t.Fatal(err)
	}
	if !rd.Root().Equal(r.CommitCID()) {
		t.Fatal("export root is not the head commit")
	}
	seen := map[string]bool{}
	for _, b := range rd.Blocks {
		if seen[string(b.CID)] {
			t.Fatalf("block %s exported twice", b.CID)
		}
		seen[string(b.CID)] = true
	}
	var w mst.Walker
	keys, records := 0, map[string]bool{}
	err = w.Walk(rd.Get, r.Data(), func(key []byte, val cid.CID) error {
		keys++
		records[string(val)] = true
		if _, ok := rd.Get(val); !ok {
			return fmt.Errorf("record %s of %s missing", val, key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys != r.Len() {
		t.Fatalf("walked %d keys, repo has %d", keys, r.Len())
	}
	// Exactly commit + nodes + records: nothing stale is carried.
	nodes := len(rd.Blocks) - 1 - len(records)
	var count int
	full := mst.NewTree()
	for k, v := range r.tree.All() {
		full.Insert(k, v)
	}
	full.Commit(func(cid.CID, []byte) { count++ })
	if nodes != count {
		t.Fatalf("export has %d MST nodes, tree has %d", nodes, count)
	}
}

func TestSyncCommit(t *testing.T) {
	r := newRepo(t, atcrypto.K256)
	if _, err := r.SyncCommit(); !errors.Is(err, ErrNoCommit) {
		t.Fatalf("sync before commit: %v", err)
	}
	ev, _ := r.Apply(nil)
	s, err := r.SyncCommit()
	if err != nil {
		t.Fatal(err)
	}
	var rd car.Reader
	if err := rd.Reset(s.Blocks, car.Options{VerifyHashes: true}); err != nil {
		t.Fatal(err)
	}
	if len(rd.Blocks) != 1 || !rd.Root().Equal(ev.Commit) || !bytes.Equal(s.Rev, ev.Rev) || string(s.DID) != testDID {
		t.Fatalf("sync: %d blocks, root %s, rev %q", len(rd.Blocks), rd.Root(), s.Rev)
	}
	if len(s.Blocks) > event.DefaultMaxSyncBlocksBytes {
		t.Fatalf("sync CAR %d bytes", len(s.Blocks))
	}
	frame := event.AppendSync(nil, s)
	var d event.Decoder
	var m event.Message
	if err := d.Decode(frame, &m); err != nil || m.Kind != event.KindSync {
		t.Fatalf("decode sync frame: %v %v", err, m.Kind)
	}
}

func TestApplyRefusals(t *testing.T) {
	r := newRepo(t, atcrypto.K256)
	r.Apply(nil)
	rec := PostRecord("hello", time.Unix(0, 0))
	if _, err := r.Apply([]Write{{Action: mst.ActionCreate, Collection: "app.bsky.feed.post", RKey: "a1", Record: rec}}); err != nil {
		t.Fatal(err)
	}
	rev, data := r.Rev(), r.Data()
	f := func(name string, ws []Write, want error) {
		t.Helper()
		_, err := r.Apply(ws)
		if !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", name, err, want)
		}
		if r.Rev() != rev || !r.Data().Equal(data) || r.Len() != 1 {
			t.Errorf("%s: refused batch changed the repo", name)
		}
	}
	post := func(a mst.Action, rkey string, rec []byte) Write {
		return Write{Action: a, Collection: "app.bsky.feed.post", RKey: rkey, Record: rec}
	}
	f("bad action", []Write{post(9, "a2", rec)}, ErrAction)
	f("bad path", []Write{post(mst.ActionCreate, "a/b", rec)}, ErrBadPath)
	f("empty rkey", []Write{post(mst.ActionCreate, "", rec)}, ErrBadPath)
	f("duplicate", []Write{post(mst.ActionCreate, "a2", rec), post(mst.ActionDelete, "a2", nil)}, ErrDuplicate)
	f("no record", []Write{post(mst.ActionCreate, "a2", nil)}, ErrNoRecord)
	f("bad record", []Write{post(mst.ActionCreate, "a2", []byte{0xa1, 0x01, 0x02})}, ErrBadRecord)
	f("create existing", []Write{post(mst.ActionCreate, "a1", rec)}, ErrExists)
	f("update missing", []Write{post(mst.ActionUpdate, "zz", rec)}, ErrNotFound)
	f("delete missing", []Write{post(mst.ActionDelete, "zz", nil)}, ErrNotFound)
	f("update unchanged", []Write{post(mst.ActionUpdate, "a1", rec)}, ErrUnchanged)
	f("late failure", []Write{post(mst.ActionCreate, "a3", rec), post(mst.ActionDelete, "zz", nil)}, ErrNotFound)
	f("too many", make([]Write, event.DefaultMaxOps+1), ErrTooManyWrite)

	if _, err := New("not a did", nil, Options{}); !errors.Is(err, ErrBadDID) {
		t.Errorf("New bad DID: %v", err)
	}
	if _, err := New(testDID, nil, Options{}); !errors.Is(err, ErrNoKey) {
		t.Errorf("New nil key: %v", err)
	}
}

func TestGetAndRecordRefs(t *testing.T) {
	r := newRepo(t, atcrypto.P256)
	r.Apply(nil)
	rec := PostRecord("shared", time.Unix(0, 0))
	r.Apply([]Write{
		{Action: mst.ActionCreate, Collection: "app.bsky.feed.post", RKey: "x1", Record: rec},
		{Action: mst.ActionCreate, Collection: "app.bsky.feed.post", RKey: "x2", Record: rec},
	})
	r.Apply([]Write{{Action: mst.ActionDelete, Collection: "app.bsky.feed.post", RKey: "x1"}})
	c, b := r.Get("app.bsky.feed.post", "x2")
	if !c.Equal(cid.Sum(cid.CodecDagCBOR, rec)) || !bytes.Equal(b, rec) {
		t.Fatal("record shared by two paths lost when one was deleted")
	}
	r.Apply([]Write{{Action: mst.ActionDelete, Collection: "app.bsky.feed.post", RKey: "x2"}})
	if c, _ := r.Get("app.bsky.feed.post", "x2"); c != nil || len(r.records) != 0 {
		t.Fatalf("deleted record still stored: %v, %d blocks", c, len(r.records))
	}
}

// TestForgetRecords: a repository that forgets record blocks emits the
// same commits (ops, blocks but the signed commit, data roots) as one that
// keeps them, while holding no record bytes.
func TestForgetRecords(t *testing.T) {
	key, err := atcrypto.GeneratePrivateKey(atcrypto.P256)
	if err != nil {
		t.Fatal(err)
	}
	keep, _ := New(testDID, key, Options{Now: fixedClock(), ClockID: 7})
	forget, _ := New(testDID, key, Options{Now: fixedClock(), ClockID: 7, ForgetRecords: true})
	shared := PostRecord("shared", time.Unix(0, 0))
	batches := [][]Write{
		nil,
		{{Action: mst.ActionCreate, Collection: "app.bsky.feed.post", RKey: "a1", Record: shared},
			{Action: mst.ActionCreate, Collection: "app.bsky.feed.post", RKey: "a2", Record: PostRecord("two", time.Unix(1, 0))}},
		{{Action: mst.ActionCreate, Collection: "app.bsky.feed.post", RKey: "a3", Record: shared}},
		{{Action: mst.ActionUpdate, Collection: "app.bsky.feed.post", RKey: "a2", Record: shared},
			{Action: mst.ActionDelete, Collection: "app.bsky.feed.post", RKey: "a1"}},
	}
	for i, ws := range batches {
		a, err := keep.Apply(ws)
		if err != nil {
			t.Fatal(err)
		}
		b, err := forget.Apply(ws)
		if err != nil {
			t.Fatal(err)
		}
		if !keep.Data().Equal(forget.Data()) || fmt.Sprint(a.Ops) != fmt.Sprint(b.Ops) {
			t.Fatalf("batch %d: data %s vs %s, ops %v vs %v", i, keep.Data(), forget.Data(), a.Ops, b.Ops)
		}
		if ka, kb := nonCommitBlocks(t, a), nonCommitBlocks(t, b); ka != kb {
			t.Fatalf("batch %d: blocks differ:\n%s\n%s", i, ka, kb)
		}
	}
	if len(forget.records) != 0 {
		t.Fatalf("%d record blocks still held", len(forget.records))
	}
	if c, b := forget.Get("app.bsky.feed.post", "a2"); c == nil || b != nil {
		t.Fatalf("Get = %v, %d bytes; want the CID and no block", c, len(b))
	}
	if _, err := forget.ExportCAR(); !errors.Is(err, ErrForgotten) {
		t.Fatalf("ExportCAR: %v, want ErrForgotten", err)
	}
}

// nonCommitBlocks lists a commit CAR's blocks other than the signed commit
// (whose P-256 signature is randomized) as "cid:hex" lines.
func nonCommitBlocks(t *testing.T, ev *event.Commit) string {
	t.Helper()
	var rd car.Reader
	if err := rd.Reset(ev.Blocks, car.Options{VerifyHashes: true}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, b := range rd.Blocks {
		if !b.CID.Equal(ev.Commit) {
			fmt.Fprintf(&out, "%s:%x\n", b.CID, b.Data)
		}
	}
	return out.String()
}

func TestPostRecordCanonical(t *testing.T) {
	at := time.Date(2025, 4, 16, 23, 40, 33, 895e6, time.UTC)
	got := PostRecord("hello world", at)
	want, err := dagcbortest.FromJSON([]byte(`{"$type":"app.bsky.feed.post","text":"hello world","createdAt":"2025-04-16T23:40:33.895Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("PostRecord\n got %x\nwant %x", got, want)
	}
}
