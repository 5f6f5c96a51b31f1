package car_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/dagcbor"
	"github.com/atrelay/relay/internal/fixtures"
)

// repoCARs are the full and partial repository CARs of
// shared/fixtures/indigo/testing/testdata (indigo @ 4b983a7).
var repoCARs = []string{
	"bafyreieovfuizojpw3zresz7sx3nk4trm2by23pt5rxbey3jme4uo5ogiu.car",
	"fakermaker.repo.car",
	"greenground.repo.car",
	"paul_staging.repo.car",
	"repo_slice.car",
	"divy.repo",
}

func readRepoCAR(t testing.TB, name string) []byte {
	return fixtures.Read(t, "fixtures/indigo/testing/testdata/"+name)
}

// TestCarFileFixtures: atproto-monorepo packages/repo/tests/car-file-fixtures.json.
func TestCarFileFixtures(t *testing.T) {
	var rows []struct {
		Root   string `json:"root"`
		Blocks []struct {
			CID   string `json:"cid"`
			Bytes string `json:"bytes"`
		} `json:"blocks"`
		CAR string `json:"car"`
	}
	raw := fixtures.Read(t, "fixtures/atproto-monorepo/packages/repo/tests/car-file-fixtures.json")
	if err := json.Unmarshal(raw, &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatal("no fixtures")
	}
	for i, row := range rows {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			buf, err := base64.RawStdEncoding.DecodeString(row.CAR)
			if err != nil {
				t.Fatal(err)
			}
			var r car.Reader
			if err := r.Reset(buf, car.Options{VerifyHashes: true}); err != nil {
				t.Fatal(err)
			}
			root := cid.MustDecode(row.Root)
			if len(r.Roots) != 1 || !r.Root().Equal(root) {
				t.Fatalf("roots = %v, want [%s]", r.Roots, row.Root)
			}
			if len(r.Blocks) != len(row.Blocks) {
				t.Fatalf("%d blocks, want %d", len(r.Blocks), len(row.Blocks))
			}
			out := car.AppendHeader(nil, root)
			for j, b := range row.Blocks {
				c := cid.MustDecode(b.CID)
				data, err := base64.RawStdEncoding.DecodeString(b.Bytes)
				if err != nil {
					t.Fatal(err)
				}
				if !r.Blocks[j].CID.Equal(c) || !bytes.Equal(r.Blocks[j].Data, data) {
					t.Errorf("block %d differs", j)
				}
				if got, ok := r.Get(c); !ok || !bytes.Equal(got, data) {
					t.Errorf("Get(%s) failed", b.CID)
				}
				out = car.AppendBlock(out, c, data)
			}
			if !bytes.Equal(out, buf) {
				t.Errorf("writer output differs from fixture car:\n got %x\nwant %x", out, buf)
			}
		})
	}
}

func TestRepoCARs(t *testing.T) {
	for _, name := range repoCARs {
		t.Run(name, func(t *testing.T) {
			buf := readRepoCAR(t, name)
			var r car.Reader
			if err := r.Reset(buf, car.Options{VerifyHashes: true}); err != nil {
				t.Fatal(err)
			}
			if _, ok := r.Get(r.Root()); !ok {
				t.Errorf("root block %s missing", r.Root())
			}
			// Rewriting the parsed CAR gives back the same bytes.
			out := car.AppendHeader(nil, r.Roots...)
			for _, b := range r.Blocks {
				if got, ok := r.Get(b.CID); !ok || !bytes.Equal(got, b.Data) {
					t.Fatalf("Get(%s) failed", b.CID)
				}
				if err := dagcbor.Wellformed(b.Data); err != nil {
					t.Errorf("block %s: %v", b.CID, err)
				}
				out = car.AppendBlock(out, b.CID, b.Data)
			}
			if !bytes.Equal(out, buf) {
				t.Errorf("round trip differs")
			}
			if _, ok := r.Get(cid.Sum(cid.CodecDagCBOR, []byte("absent"))); ok {
				t.Error("Get found an absent CID")
			}
		})
	}
}

// TestTruncation: every prefix of every fixture CAR either ends on a section
// boundary (and parses to exactly the blocks before it) or fails with
// ErrTruncated.
func TestTruncation(t *testing.T) {
	for _, name := range []string{"repo_slice.car", "greenground.repo.car", "divy.repo"} {
		buf := readRepoCAR(t, name)
		var full car.Reader
		if err := full.Reset(buf, car.Options{}); err != nil {
			t.Fatal(err)
		}
		boundaries := map[int]int{} // prefix length -> block count
		end := len(buf)
		for i := len(full.Blocks) - 1; i >= -1; i-- {
			boundaries[end] = i + 1
			if i >= 0 {
				b := full.Blocks[i]
				secLen := len(b.CID) + len(b.Data)
				end -= secLen + len(binary.AppendUvarint(nil, uint64(secLen)))
			}
		}
		var r car.Reader
		for n := 0; n < len(buf); n++ {
			err := r.Reset(buf[:n], car.Options{VerifyHashes: true})
			if want, ok := boundaries[n]; ok {
				if err != nil || len(r.Blocks) != want {
					t.Errorf("%s[:%d]: %v, %d blocks, want %d", name, n, err, len(r.Blocks), want)
				}
				continue
			}
			if !errors.Is(err, car.ErrTruncated) {
				t.Errorf("%s[:%d]: got %v, want ErrTruncated", name, n, err)
			}
			if len(r.Blocks) != 0 || len(r.Roots) != 0 {
				t.Errorf("%s[:%d]: reader not emptied after error", name, n)
			}
		}
	}
}

func TestErrors(t *testing.T) {
	root := cid.Sum(cid.CodecDagCBOR, []byte{0xa0})
	good := car.AppendBlock(car.AppendHeader(nil, root), root, []byte{0xa0})
	header := func(items ...[]byte) []byte {
		h := dagcbor.AppendMapHeader(nil, len(items)/2)
		for _, it := range items {
			h = append(h, it...)
		}
		return append(binary.AppendUvarint(nil, uint64(len(h))), h...)
	}
	txt := func(s string) []byte { return dagcbor.AppendText(nil, s) }
	rootsArr := func(cs ...cid.CID) []byte {
		b := dagcbor.AppendArrayHeader(nil, len(cs))
		for _, c := range cs {
			b = dagcbor.AppendCIDLink(b, c)
		}
		return b
	}
	one := []byte{1}
	bad := append([]byte(nil), good...)
	bad[len(bad)-1] = 0xa1 // data no longer matches the CID
	cases := []struct {
		name string
		buf  []byte
		opts car.Options
		want error
	}{
		{"empty", nil, car.Options{}, car.ErrTruncated},
		{"bad varint", []byte{0x80, 0x00}, car.Options{}, car.ErrVarint},
		{"long varint", bytes.Repeat([]byte{0xff}, 10), car.Options{}, car.ErrVarint},
		{"header too long", binary.AppendUvarint(nil, car.MaxHeaderLen+1), car.Options{}, car.ErrHeaderLen},
		{"header not map", append([]byte{1}, 0x01), car.Options{}, car.ErrHeader},
		{"version 2", header(txt("roots"), rootsArr(root), txt("version"), []byte{2}), car.Options{}, car.ErrVersion},
		{"no version", header(txt("roots"), rootsArr(root)), car.Options{}, car.ErrVersion},
		{"no roots key", header(txt("version"), one), car.Options{}, car.ErrHeader},
		{"empty roots", header(txt("roots"), rootsArr(), txt("version"), one), car.Options{}, car.ErrNoRoots},
		{"roots not links", header(txt("roots"), []byte{0x81, 0x01}, txt("version"), one), car.Options{}, car.ErrHeader},
		{"dup version", header(txt("version"), one, txt("version"), one), car.Options{}, car.ErrHeader},
		{"empty section", append(car.AppendHeader(nil, root), 0), car.Options{}, car.ErrEmptySection},
		{"bad cid", append(car.AppendHeader(nil, root), 2, 0x02, 0x71), car.Options{}, car.ErrBadCID},
		{"hash mismatch", bad, car.Options{VerifyHashes: true}, car.ErrHashMismatch},
		{"too many blocks", car.AppendBlock(good, root, []byte{0xa0}), car.Options{MaxBlocks: 1}, car.ErrTooManyBlocks},
		{"block too large", good, car.Options{MaxBlockSize: 0}, nil},
		{"block too large", car.AppendBlock(car.AppendHeader(nil, root), root, make([]byte, 10)), car.Options{MaxBlockSize: 9}, car.ErrBlockTooLarge},
		{"unverifiable", car.AppendBlock(car.AppendHeader(nil, root), cid.CID{1, 0x71, 0x13, 1, 0}, nil), car.Options{VerifyHashes: true}, car.ErrUnverifiable},
		{"hash mismatch ignored", bad, car.Options{}, nil},
	}
	var r car.Reader
	for _, c := range cases {
		err := r.Reset(c.buf, c.opts)
		if !errors.Is(err, c.want) || (err == nil) != (c.want == nil) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

// TestDuplicates: duplicates are allowed and Get returns the first, with and
// without the index.
func TestDuplicates(t *testing.T) {
	for _, n := range []int{4, 100} {
		buf := car.AppendHeader(nil, cid.Sum(cid.CodecDagCBOR, []byte{0}))
		var cids []cid.CID
		for i := range n {
			data := dagcbor.AppendInt(nil, int64(i))
			c := cid.Sum(cid.CodecDagCBOR, data)
			cids = append(cids, c)
			buf = car.AppendBlock(buf, c, data)
		}
		buf = car.AppendBlock(buf, cids[0], []byte("junk after a duplicate CID"))
		var r car.Reader
		if err := r.Reset(buf, car.Options{}); err != nil {
			t.Fatal(err)
		}
		for i, c := range cids {
			got, ok := r.Get(c)
			if !ok || !bytes.Equal(got, dagcbor.AppendInt(nil, int64(i))) {
				t.Errorf("n=%d: Get(block %d) = %x, %v", n, i, got, ok)
			}
		}
	}
}

func TestAllocs(t *testing.T) {
	small := readRepoCAR(t, "repo_slice.car")
	large := readRepoCAR(t, "fakermaker.repo.car")
	var r car.Reader
	for _, buf := range [][]byte{small, large} {
		if err := r.Reset(buf, car.Options{VerifyHashes: true}); err != nil {
			t.Fatal(err)
		}
		last := r.Blocks[len(r.Blocks)-1].CID
		allocs := testing.AllocsPerRun(20, func() {
			if err := r.Reset(buf, car.Options{}); err != nil {
				t.Fatal(err)
			}
			if _, ok := r.Get(last); !ok {
				t.Fatal("missing block")
			}
		})
		if allocs != 0 {
			t.Errorf("%d-byte CAR: %v allocs per Reset+Get, want 0", len(buf), allocs)
		}
	}
}

func FuzzReader(f *testing.F) {
	for _, name := range []string{"repo_slice.car", "greenground.repo.car", "divy.repo"} {
		f.Add(readRepoCAR(f, name))
	}
	root := cid.Sum(cid.CodecDagCBOR, []byte{0xa0})
	f.Add(car.AppendBlock(car.AppendHeader(nil, root), root, []byte{0xa0}))
	f.Add([]byte{0x80, 0x00})
	f.Fuzz(func(t *testing.T, buf []byte) {
		var r car.Reader
		if err := r.Reset(buf, car.Options{MaxBlocks: 1000}); err != nil {
			return
		}
		if len(r.Roots) == 0 {
			t.Fatal("parsed without roots")
		}
		out := car.AppendHeader(nil, r.Roots...)
		for _, b := range r.Blocks {
			if _, ok := r.Get(b.CID); !ok {
				t.Fatalf("Get(%x) missing", []byte(b.CID))
			}
			out = car.AppendBlock(out, b.CID, b.Data)
		}
		var r2 car.Reader
		if err := r2.Reset(out, car.Options{MaxBlocks: 1000}); err != nil {
			t.Fatalf("re-encoded CAR does not parse: %v", err)
		}
		if len(r2.Blocks) != len(r.Blocks) || len(r2.Roots) != len(r.Roots) {
			t.Fatal("re-encoded CAR differs")
		}
	})
}

// syntheticCAR builds a CAR of n small dag-cbor blocks.
func syntheticCAR(n int) ([]byte, []cid.CID) {
	var cids []cid.CID
	buf := car.AppendHeader(nil, cid.Sum(cid.CodecDagCBOR, []byte{0}))
	for i := range n {
		data := dagcbor.AppendInt(dagcbor.AppendArrayHeader(nil, 2), int64(i))
		data = dagcbor.AppendText(data, "some record payload of typical size")
		c := cid.Sum(cid.CodecDagCBOR, data)
		cids = append(cids, c)
		buf = car.AppendBlock(buf, c, data)
	}
	return buf, cids
}

func BenchmarkReset(b *testing.B) {
	bufs := map[string][]byte{"slice5": readRepoCAR(b, "repo_slice.car")}
	bufs["repo10k"], _ = syntheticCAR(10000)
	for _, name := range []string{"slice5", "repo10k"} {
		buf := bufs[name]
		for _, verify := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/verify=%v", name, verify), func(b *testing.B) {
				var r car.Reader
				b.SetBytes(int64(len(buf)))
				b.ReportAllocs()
				for b.Loop() {
					if err := r.Reset(buf, car.Options{VerifyHashes: verify}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkGet(b *testing.B) {
	for _, n := range []int{5, 16, 17, 10000} {
		buf, cids := syntheticCAR(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var r car.Reader
			if err := r.Reset(buf, car.Options{}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := r.Get(cids[i]); !ok {
					b.Fatal("missing")
				}
				if i++; i == len(cids) {
					i = 0
				}
			}
		})
	}
}
