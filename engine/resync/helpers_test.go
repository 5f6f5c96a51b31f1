package resync

import (
	"fmt"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/mst"
	"github.com/atrelay/relay/engine/atproto/syntax"
	"github.com/atrelay/relay/internal/repo"
)

// testRepo is a repository CAR built by hand (so tests can put anything in
// it) and the parts tests tamper with.
type testRepo struct {
	did     string
	key     *atcrypto.PrivateKey
	car     []byte
	commit  cid.CID
	data    cid.CID
	rev     string
	nodes   []cid.CID // MST nodes, root first
	records []cid.CID // record blocks, in key order
}

// record is one leaf of a test repository.
type record struct {
	key  string
	data []byte
}

// posts returns n post records under distinct keys.
func posts(n int) []record {
	out := make([]record, n)
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range out {
		out[i] = record{
			key:  fmt.Sprintf("app.bsky.feed.post/%s", syntax.NewTID(at.Add(time.Duration(i)*time.Second), 1)),
			data: repo.PostRecord(fmt.Sprintf("post number %d", i), at),
		}
	}
	return out
}

// newKey returns a reproducible secp256k1 key.
func newKey(t testing.TB, seed byte) *atcrypto.PrivateKey {
	t.Helper()
	b := make([]byte, 32)
	for i := range b {
		b[i] = seed + byte(i) + 1
	}
	k, err := atcrypto.ParsePrivateKey(atcrypto.K256, b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// buildRepo builds the signed repository of did holding recs, with rev
// stamped at revTime (record keys must be unique).
func buildRepo(t testing.TB, did string, key *atcrypto.PrivateKey, recs []record, revTime time.Time) *testRepo {
	t.Helper()
	tree := mst.NewTree()
	tr := &testRepo{did: did, key: key, rev: string(syntax.NewTID(revTime, 3))}
	for _, r := range recs {
		c := cid.Sum(cid.CodecDagCBOR, r.data)
		if _, err := tree.Insert([]byte(r.key), c); err != nil {
			t.Fatal(err)
		}
		tr.records = append(tr.records, c)
	}
	var body []byte
	tr.data = tree.Commit(func(c cid.CID, block []byte) {
		tr.nodes = append(tr.nodes, c.Clone())
		body = car.AppendBlock(body, c, block)
	})
	for _, r := range recs {
		body = car.AppendBlock(body, cid.Sum(cid.CodecDagCBOR, r.data), r.data)
	}
	tr.car = signedCAR(t, did, key, tr.rev, tr.data, body, &tr.commit)
	return tr
}

// signedCAR prepends a header and a commit block for data signed by key
// to body, storing the commit CID in commit.
func signedCAR(t testing.TB, did string, key *atcrypto.PrivateKey, rev string, data cid.CID, body []byte, commit *cid.CID) []byte {
	t.Helper()
	unsigned := repo.AppendCommitObject(nil, []byte(did), []byte(rev), data, nil)
	sig, err := key.Sign(unsigned)
	if err != nil {
		t.Fatal(err)
	}
	block := repo.AppendCommitObject(nil, []byte(did), []byte(rev), data, sig)
	*commit = cid.Sum(cid.CodecDagCBOR, block)
	out := car.AppendHeader(nil, *commit)
	out = car.AppendBlock(out, *commit, block)
	return append(out, body...)
}

// rewrite rebuilds a CAR block by block: edit returns the data to keep
// (possibly changed, keeping the old CID) or nil to drop the block.
func rewrite(t testing.TB, in []byte, edit func(c cid.CID, data []byte) []byte) []byte {
	t.Helper()
	var r car.Reader
	if err := r.Reset(in, car.Options{}); err != nil {
		t.Fatal(err)
	}
	out := car.AppendHeader(nil, r.Roots...)
	for _, b := range r.Blocks {
		if d := edit(b.CID, b.Data); d != nil {
			out = car.AppendBlock(out, b.CID, d)
		}
	}
	return out
}

// without returns a copy of the CAR without the block c.
func without(t testing.TB, in []byte, c cid.CID) []byte {
	return rewrite(t, in, func(bc cid.CID, d []byte) []byte {
		if bc.Equal(c) {
			return nil
		}
		return d
	})
}
