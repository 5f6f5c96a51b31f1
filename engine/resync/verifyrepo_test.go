package resync

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/mst"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/engine/verify"
	"github.com/atrelay/relay/internal/fixtures"
)

const indigoTestdata = "fixtures/indigo/testing/testdata/"

// fixtureRepo is one full-repository CAR of indigo's testdata with the DID
// document shipped beside it.
type fixtureRepo struct {
	name    string
	docDID  string
	records int
	// want is what VerifyRepo says with the document's DID and key.
	want verify.Reason
}

// The indigo repository fixtures (indigo @ 4b983a7, testing/testdata). None
// verifies as a v3 repository of its document's DID: fakermaker and
// paul_staging are version-2 commits (no rev; paul_staging's signature is
// valid, fakermaker's is high-S), and greenground's commit names another
// DID than its document (with that DID it verifies). Their MSTs and record
// sets are complete, which TestVerifyRepoFixtureTrees checks by re-signing.
var fixtureRepos = []fixtureRepo{
	{"fakermaker", "did:plc:dpg45vsnuir2vqqqadsn6afg", 142, verify.ReasonBadCommit},
	{"greenground", "did:plc:wqgdnqlv2mwiio6pfchwtrff", 2, verify.ReasonCommitDIDMismatch},
	{"paul_staging", "did:plc:cmpvykrzb2l22kj4ojlv3ox4", 185, verify.ReasonBadCommit},
}

func fixtureKey(t *testing.T, f fixtureRepo) atcrypto.PublicKey {
	t.Helper()
	id, err := identity.ParseDocument(f.docDID, fixtures.Read(t, indigoTestdata+f.name+".didDoc.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	return id.Key
}

func TestVerifyRepoFixtures(t *testing.T) {
	for _, f := range fixtureRepos {
		t.Run(f.name, func(t *testing.T) {
			key := fixtureKey(t, f)
			b := fixtures.Read(t, indigoTestdata+f.name+".repo.car")
			_, err := verify.VerifyRepo(b, f.docDID, key, verify.RepoConfig{})
			if got := verify.RepoReason(err); got != f.want {
				t.Fatalf("reason %s, want %s (%v)", got, f.want, err)
			}
			if f.want == verify.ReasonBadCommit && !errors.Is(err, verify.ErrCommitMissing) {
				t.Fatalf("v2 commit should lack rev: %v", err)
			}
		})
	}
	t.Run("greenground/own-did", func(t *testing.T) {
		// The document's id differs from the DID the commit names, but
		// its key signed the commit: with that DID the repository verifies.
		f := fixtureRepos[1]
		b := fixtures.Read(t, indigoTestdata+f.name+".repo.car")
		st, err := verify.VerifyRepo(b, "did:plc:kzcqyc3unb33eh5sxzsfs25z", fixtureKey(t, f), verify.RepoConfig{})
		if err != nil || st.Records != f.records || string(st.Rev) != "3k67up3j7hf2x" {
			t.Fatalf("%+v %v", st, err)
		}
	})
	t.Run("v2-signatures", func(t *testing.T) {
		// Outside VerifyRepo, which takes only v3: paul_staging's v2
		// commit is signed by its document's key, fakermaker's (P-256)
		// signature is high-S, which atproto forbids.
		want := map[string]error{"fakermaker": atcrypto.ErrSigHighS, "paul_staging": nil}
		for _, f := range fixtureRepos {
			w, ok := want[f.name]
			if !ok {
				continue
			}
			var r car.Reader
			if err := r.Reset(fixtures.Read(t, indigoTestdata+f.name+".repo.car"), car.Options{}); err != nil {
				t.Fatal(err)
			}
			b, _ := r.Get(r.Root())
			// Cut `63 "sig" 58 40 <64 bytes>` out and shorten the map head.
			i := bytes.Index(b, []byte("\x63sig\x58\x40"))
			if i < 0 || b[0] != 0xa5 {
				t.Fatalf("%s: unexpected commit layout", f.name)
			}
			unsigned := append([]byte{b[0] - 1}, b[1:i]...)
			unsigned = append(unsigned, b[i+70:]...)
			if err := fixtureKey(t, f).Verify(unsigned, b[i+6:i+70]); !errors.Is(err, w) {
				t.Errorf("%s: signature %v, want %v", f.name, err, w)
			}
		}
	})
	t.Run("non-repo-cars", func(t *testing.T) {
		// The other CARs of the folder are v2 commits or slices.
		for _, name := range []string{"bafyreieovfuizojpw3zresz7sx3nk4trm2by23pt5rxbey3jme4uo5ogiu.car", "repo_slice.car", "divy.repo"} {
			_, err := verify.VerifyRepo(fixtures.Read(t, indigoTestdata+name), "did:plc:z5vnbioquyhivxirw3bbljmu", atcrypto.PublicKey{}, verify.RepoConfig{})
			if verify.RepoReason(err) != verify.ReasonBadCommit {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
}

// resign replaces a fixture's commit with a v3 commit over the same MST
// root signed by key, keeping every other block.
func resign(t *testing.T, in []byte, did string, key *atcrypto.PrivateKey) ([]byte, cid.CID) {
	t.Helper()
	var r car.Reader
	if err := r.Reset(in, car.Options{VerifyHashes: true}); err != nil {
		t.Fatal(err)
	}
	block, _ := r.Get(r.Root())
	var obj struct {
		Data cbor.Tag `cbor:"data"`
	}
	if err := cbor.Unmarshal(block, &obj); err != nil {
		t.Fatal(err)
	}
	link, ok := obj.Data.Content.([]byte)
	if !ok || len(link) < 2 {
		t.Fatal("commit data is not a link")
	}
	data := cid.CID(link[1:])
	var body []byte
	for _, b := range r.Blocks {
		if !b.CID.Equal(r.Root()) {
			body = car.AppendBlock(body, b.CID, b.Data)
		}
	}
	var commit cid.CID
	return signedCAR(t, did, key, "3kaaaaaaaaaa2", data, body, &commit), data
}

// TestVerifyRepoFixtureTrees verifies the real MSTs and records of the
// fixtures under a fresh v3 commit: every node present and valid, every
// record present.
func TestVerifyRepoFixtureTrees(t *testing.T) {
	key := newKey(t, 9)
	for _, f := range fixtureRepos {
		t.Run(f.name, func(t *testing.T) {
			b, data := resign(t, fixtures.Read(t, indigoTestdata+f.name+".repo.car"), f.docDID, key)
			st, err := verify.VerifyRepo(b, f.docDID, key.Public(), verify.RepoConfig{})
			if err != nil {
				t.Fatal(err)
			}
			if st.Records != f.records || !st.Data.Equal(data) || string(st.Rev) != "3kaaaaaaaaaa2" {
				t.Fatalf("state %d records, data %s rev %s", st.Records, st.Data, st.Rev)
			}
		})
	}
}

// TestVerifyRepoFailures checks one case per failure reason on a
// hand-built repository.
func TestVerifyRepoFailures(t *testing.T) {
	const did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
	key := newKey(t, 1)
	now := time.Now()
	base := buildRepo(t, did, key, posts(60), now)
	if len(base.nodes) < 3 {
		t.Fatalf("want a multi-node tree, got %d nodes", len(base.nodes))
	}
	f := func(name string, b []byte, did string, key atcrypto.PublicKey, want verify.Reason, wantErr error) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			_, err := verify.VerifyRepo(b, did, key, verify.RepoConfig{})
			if got := verify.RepoReason(err); got != want {
				t.Fatalf("reason %s, want %s (%v)", got, want, err)
			}
			if wantErr != nil && !errors.Is(err, wantErr) {
				t.Fatalf("err %v, want %v", err, wantErr)
			}
		})
	}
	st, err := verify.VerifyRepo(base.car, did, key.Public(), verify.RepoConfig{})
	if err != nil || st.Records != 60 || !st.Commit.Equal(base.commit) || !st.Data.Equal(base.data) || string(st.Rev) != base.rev {
		t.Fatalf("valid repo: %+v %v", st, err)
	}
	if !cid.Sum(cid.CodecDagCBOR, st.CommitBlock).Equal(st.Commit) {
		t.Fatal("CommitBlock does not hash to Commit")
	}
	f("empty", nil, did, key.Public(), verify.ReasonEmptyBlocks, verify.ErrEmptyBlocks)
	f("truncated", base.car[:len(base.car)-3], did, key.Public(), verify.ReasonBadCAR, car.ErrTruncated)
	tampered := rewrite(t, base.car, func(c cid.CID, d []byte) []byte {
		if c.Equal(base.records[7]) {
			d = append([]byte(nil), d...)
			d[len(d)-1] ^= 1
		}
		return d
	})
	f("tampered-record", tampered, did, key.Public(), verify.ReasonBadCAR, car.ErrHashMismatch)
	f("no-commit-block", without(t, base.car, base.commit), did, key.Public(), verify.ReasonMissingCommitBlock, verify.ErrNoCommitBlock)
	f("wrong-did", base.car, "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb", key.Public(), verify.ReasonCommitDIDMismatch, verify.ErrDIDMismatch)
	f("wrong-key", base.car, did, newKey(t, 2).Public(), verify.ReasonBadSignature, atcrypto.ErrBadSignature)
	f("no-key", base.car, did, atcrypto.PublicKey{}, verify.ReasonBadSignature, atcrypto.ErrNoKey)
	f("missing-root-node", without(t, base.car, base.data), did, key.Public(), verify.ReasonMissingBlock, mst.ErrMissingBlock)
	f("missing-inner-node", without(t, base.car, base.nodes[len(base.nodes)-1]), did, key.Public(), verify.ReasonMissingBlock, mst.ErrMissingBlock)
	f("missing-record", without(t, base.car, base.records[42]), did, key.Public(), verify.ReasonMissingRecord, verify.ErrMissingRecord)
	future := buildRepo(t, did, key, posts(3), now.Add(time.Hour))
	f("future-rev", future.car, did, key.Public(), verify.ReasonFutureRev, verify.ErrFutureRev)
	notCBOR := buildRepo(t, did, key, []record{{"app.bsky.feed.post/3kaaaaaaaaaa2", []byte{0xff, 0x00}}}, now)
	f("record-not-cbor", notCBOR.car, did, key.Public(), verify.ReasonBadRecord, verify.ErrRecordEncoding)
	empty := buildRepo(t, did, key, nil, now)
	f("empty-tree", empty.car, did, key.Public(), verify.ReasonNone, nil)
	// data names a record block: it hashes correctly but is no MST node.
	var c cid.CID
	rec := cid.Sum(cid.CodecDagCBOR, posts(1)[0].data)
	f("data-points-at-record", signedCAR(t, did, key, empty.rev, rec, car.AppendBlock(nil, rec, posts(1)[0].data), &c), did, key.Public(), verify.ReasonBadMST, mst.ErrNodeEncoding)
}

func TestRepoReason(t *testing.T) {
	if verify.RepoReason(nil) != verify.ReasonNone {
		t.Fatal("nil error has a reason")
	}
	if verify.RepoReason(errors.New("other")) != verify.ReasonBadCAR {
		t.Fatal("foreign error not mapped to bad_car")
	}
	e := &verify.RepoError{Reason: verify.ReasonBadMST, Err: mst.ErrKeyOrder}
	if !strings.Contains(e.Error(), "bad_mst") || !errors.Is(e, mst.ErrKeyOrder) {
		t.Fatalf("RepoError %q does not name or wrap its cause", e)
	}
}

// TestVerifyRepoAllocs: a warmed-up RepoVerifier verifies without
// allocating.
func TestVerifyRepoAllocs(t *testing.T) {
	const did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
	key := newKey(t, 1)
	tr := buildRepo(t, did, key, posts(300), time.Now())
	v := verify.NewRepoVerifier(verify.RepoConfig{})
	pub := key.Public()
	if _, err := v.Verify(tr.car, did, pub); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := v.Verify(tr.car, did, pub); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocs per Verify, want 0", allocs)
	}
}

// FuzzVerifyRepo: no input panics, and a success names the asked DID.
func FuzzVerifyRepo(f *testing.F) {
	const did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
	key := newKey(f, 1)
	f.Add(buildRepo(f, did, key, posts(20), time.Now()).car)
	f.Add(buildRepo(f, did, key, nil, time.Now()).car)
	for _, fr := range fixtureRepos {
		f.Add(fixtures.Read(f, indigoTestdata+fr.name+".repo.car"))
	}
	f.Add(fixtures.Read(f, indigoTestdata+"repo_slice.car"))
	pub := key.Public()
	v := verify.NewRepoVerifier(verify.RepoConfig{})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := v.Verify(b, did, pub)
		if err == nil && (st.Commit == nil || st.CommitBlock == nil) {
			t.Fatal("success without a commit")
		}
		if err != nil && verify.RepoReason(err) == verify.ReasonNone {
			t.Fatalf("error without a reason: %v", err)
		}
	})
}

// repoForBench is a realistic repository: 2,000 posts.
func repoForBench(b *testing.B) (*testRepo, atcrypto.PublicKey) {
	key := newKey(b, 1)
	tr := buildRepo(b, "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", key, posts(2000), time.Now())
	return tr, key.Public()
}

func BenchmarkVerifyRepo(b *testing.B) {
	tr, pub := repoForBench(b)
	v := verify.NewRepoVerifier(verify.RepoConfig{})
	b.SetBytes(int64(len(tr.car)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tr.car, tr.did, pub); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/2000, "ns/record")
}
