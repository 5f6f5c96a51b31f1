package jetstream

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/atrelay/relay/engine/atproto/dagcbor"
	"github.com/atrelay/relay/internal/fixtures"

	"github.com/atrelay/relay/internal/streamtest"
)

func readFixture(rel string) ([]byte, error) { return os.ReadFile(fixtures.Path(rel)) }

// decodeJSON parses b keeping numbers exact, for semantic comparisons.
func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("invalid JSON %q: %v", b, err)
	}
	if d.More() {
		t.Fatalf("trailing data after JSON %q", b)
	}
	return v
}

// TestRecordDataModelFixtures converts every row of the atproto interop
// data-model fixtures (atproto-interop-tests 056e574,
// data-model/data-model-fixtures.json) from cbor_base64 and requires the
// row's json, compared semantically: $link, $bytes and a blob map.
func TestRecordDataModelFixtures(t *testing.T) {
	raw, err := readFixture("fixtures/interop/data-model/data-model-fixtures.json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		JSON json.RawMessage `json:"json"`
		CBOR string          `json:"cbor_base64"`
		CID  string          `json:"cid"`
	}
	if err := json.Unmarshal(raw, &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatal("no fixture rows")
	}
	var rc recordJSON
	for i, row := range rows {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			cb, err := base64.RawStdEncoding.DecodeString(row.CBOR)
			if err != nil {
				t.Fatal(err)
			}
			got, err := rc.appendRecord(nil, cb)
			if err != nil {
				t.Fatalf("appendRecord: %v", err)
			}
			if g, w := decodeJSON(t, got), decodeJSON(t, row.JSON); !reflect.DeepEqual(g, w) {
				t.Fatalf("got  %s\nwant %s", got, row.JSON)
			}
		})
	}
}

// TestRecordJetstreamBytes pins the exact bytes for a record with every
// kind of value: keys in bytewise order (as Go's JSON map encoding writes
// Jetstream's records), HTML-escaped strings, $link, $bytes, a blob.
func TestRecordJetstreamBytes(t *testing.T) {
	raw, err := readFixture("fixtures/interop/data-model/data-model-fixtures.json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		CBOR string `json:"cbor_base64"`
	}
	if err := json.Unmarshal(raw, &rows); err != nil {
		t.Fatal(err)
	}
	cb, _ := base64.RawStdEncoding.DecodeString(rows[1].CBOR)
	var rc recordJSON
	got, err := rc.appendRecord(nil, cb)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":{"$link":"bafyreidfayvfuwqa7qlnopdjiqrxzs6blmoeu4rujcjtnci5beludirz2a"},` +
		`"b":{"$bytes":"nFERjvLLiw9qm45JrqH9QTzyC2Lu1Xb4ne6+sBrCzI0"},` +
		`"c":{"$type":"blob","mimeType":"image/jpeg","ref":{"$link":"bafkreiccldh766hwcnuxnf2wh6jgzepf2nlu2lvcllt63eww5p6chi4ity"},"size":10000}}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}

	// A post: canonical CBOR order (text, $type, createdAt) comes out in
	// bytewise order, strings escaped as encoding/json escapes them.
	text := "a <b> & \"c\"\n\u2028 é \x01"
	b := dagcbor.AppendMapHeader(nil, 4)
	b = dagcbor.AppendText(b, "text")
	b = dagcbor.AppendText(b, text)
	b = dagcbor.AppendText(b, "$type")
	b = dagcbor.AppendText(b, "app.bsky.feed.post")
	b = dagcbor.AppendText(b, "counts")
	b = dagcbor.AppendArrayHeader(b, 3)
	b = dagcbor.AppendInt(b, 0)
	b = dagcbor.AppendInt(b, -42)
	b = dagcbor.AppendInt(b, 1<<62)
	b = dagcbor.AppendText(b, "createdAt")
	b = dagcbor.AppendNull(b)
	got, err = rc.appendRecord(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	wantText, _ := json.Marshal(text)
	want = `{"$type":"app.bsky.feed.post","counts":[0,-42,4611686018427387904],"createdAt":null,"text":` + string(wantText) + `}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// manyKeysRecord is a record map of n keys in descending byte order, the
// worst case for an insertion sort, each key's value its index, and its
// JSON with the keys in ascending (bytewise) order.
func manyKeysRecord(n int) (rec []byte, want string) {
	key := func(i int) string { return fmt.Sprintf("k%06d", i) }
	rec = dagcbor.AppendMapHeader(nil, n)
	for i := n - 1; i >= 0; i-- {
		rec = dagcbor.AppendText(rec, key(i))
		rec = dagcbor.AppendInt(rec, int64(i))
	}
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%d", key(i), i)
	}
	b.WriteByte('}')
	return rec, b.String()
}

// TestRecordManyKeys: a map far above the insertion-sort cutoff, its keys
// in descending order, comes out with every key, in bytewise order; a
// duplicate pair far apart in such a map is still refused, and a map just
// above the cutoff sorts like one just below it.
func TestRecordManyKeys(t *testing.T) {
	var rc recordJSON
	for _, n := range []int{insertionSortMax, insertionSortMax + 1, 20_000} {
		rec, want := manyKeysRecord(n)
		got, err := rc.appendRecord(nil, rec)
		if err != nil {
			t.Fatalf("%d keys: %v", n, err)
		}
		if string(got) != want {
			t.Fatalf("%d keys: got %.200s…, want %.200s…", n, got, want)
		}
	}
	// The first and the last pair share a key.
	rec, _ := manyKeysRecord(20_000)
	dup := dagcbor.AppendMapHeader(nil, 20_001)
	dup = append(dup, rec[len(dagcbor.AppendMapHeader(nil, 20_000)):]...)
	dup = dagcbor.AppendText(dup, "k019999")
	dup = dagcbor.AppendInt(dup, 0)
	if _, err := rc.appendRecord(nil, dup); err != errRecordDupKey {
		t.Fatalf("duplicate key in a large map: err = %v, want %v", err, errRecordDupKey)
	}
}

// TestSortEntriesComparisons: entries in descending order, the worst case
// of an insertion sort (n²/2 comparisons), and in a scrambled order (n²/4)
// sort in O(n log n) comparisons; a map at the cutoff still takes at most
// an insertion sort's n²/2.
func TestSortEntriesComparisons(t *testing.T) {
	byKey := func(a, b mapEntry) int { return cmp.Compare(a.keyStart, b.keyStart) }
	f := func(name string, n int, rank func(i int) int, most int) {
		t.Helper()
		s := make([]mapEntry, n)
		for i := range s {
			s[i].keyStart = rank(i)
		}
		calls := 0
		sortEntries(s, func(a, b mapEntry) int { calls++; return byKey(a, b) })
		if !slices.IsSortedFunc(s, byKey) {
			t.Fatalf("%s, %d entries: not sorted", name, n)
		}
		if calls > most {
			t.Fatalf("%s, %d entries: %d comparisons, want at most %d", name, n, calls, most)
		}
	}
	const small, n = insertionSortMax, 1 << 14
	f("descending", small, func(i int) int { return small - i }, small*(small-1)/2)
	f("descending", n, func(i int) int { return n - i }, 4*n*14) // 4 n log₂ n
	f("scrambled", n, func(i int) int { return i * 7919 % n }, 4*n*14)
}

// TestRecordRejects lists values with no JSON form in the data model.
func TestRecordRejects(t *testing.T) {
	one := func(key string, val []byte) []byte {
		b := dagcbor.AppendMapHeader(nil, 1)
		b = dagcbor.AppendText(b, key)
		return append(b, val...)
	}
	f := func(name string, rec []byte, want error) {
		t.Helper()
		var rc recordJSON
		dst := []byte("prefix")
		got, err := rc.appendRecord(dst, rec)
		if err != want {
			t.Errorf("%s: err = %v, want %v", name, err, want)
		}
		if string(got) != "prefix" {
			t.Errorf("%s: dst = %q, want it cut back", name, got)
		}
	}
	f("float", one("a", []byte{0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}), errRecordType)
	f("undefined", one("a", []byte{0xf7}), errRecordType)
	f("tag 1", one("a", []byte{0xc1, 0x01}), errRecordType)
	f("uint over int64", one("a", []byte{0x1b, 0x80, 0, 0, 0, 0, 0, 0, 0}), errRecordType)
	f("indefinite array", one("a", []byte{0x9f, 0x01, 0xff}), errRecordType)
	f("int key", []byte{0xa1, 0x01, 0x01}, errRecordType)
	f("duplicate key", dagcbor.AppendText(dagcbor.AppendText(dagcbor.AppendText(dagcbor.AppendText(
		dagcbor.AppendMapHeader(nil, 2), "a"), "x"), "a"), "y"), errRecordDupKey)
	f("top-level array", []byte{0x81, 0x01}, errRecordNotMap)
	f("empty", nil, errRecordNotMap)
	f("truncated", one("a", []byte{0x63, 'a'}), errRecordCBOR)
	f("trailing", append(one("a", []byte{0x01}), 0x01), errRecordCBOR)
	deep := []byte{}
	for range dagcbor.MaxDepth + 1 {
		deep = append(deep, 0xa1, 0x61, 'a')
	}
	f("too deep", append(deep, 0x01), errRecordDepth)
}

// TestJSONStringEscapes checks appendJSONString against encoding/json,
// which escapes Jetstream's records, byte for byte.
func TestJSONStringEscapes(t *testing.T) {
	for _, s := range []string{
		"", "plain", "quote \" backslash \\", "ctl \x00\x1f\x7f \b\f\n\r\t",
		"html <script>&amp;</script>", "line sep \u2028 para \u2029",
		"emoji 😀 CJK ⽘", "bad utf8 \xff\xfe end", "truncated \xe2\x82",
	} {
		want, _ := json.Marshal(s)
		got := appendJSONString(nil, []byte(s))
		if !bytes.Equal(got, want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	}
}

// TestRecordAllocs: a converter that has seen a record converts it again
// without allocating, whichever way its maps are sorted.
func TestRecordAllocs(t *testing.T) {
	if streamtest.Race {
		t.Skip("the race detector allocates")
	}
	small, _ := manyKeysRecord(insertionSortMax)
	large, _ := manyKeysRecord(1000)
	for name, rec := range map[string][]byte{
		"post":  postRecord("hello world, a record of ordinary size with some text in it"),
		"small": small,
		"large": large,
	} {
		var rc recordJSON
		dst, _ := rc.appendRecord(nil, rec)
		if n := testing.AllocsPerRun(100, func() {
			dst, _ = rc.appendRecord(dst[:0], rec)
		}); n != 0 {
			t.Errorf("%s: %v allocations per record", name, n)
		}
	}
}

// BenchmarkRecordJSONManyKeys converts a record whose map keys come in
// descending order: n = 16 is a large ordinary record, n = 16,384 a hostile
// one (dagcbor allows 131,072 pairs).
func BenchmarkRecordJSONManyKeys(b *testing.B) {
	for _, n := range []int{16, 16_384} {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			rec, _ := manyKeysRecord(n)
			var rc recordJSON
			dst, err := rc.appendRecord(nil, rec)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(rec)))
			b.ReportAllocs()
			for b.Loop() {
				dst, _ = rc.appendRecord(dst[:0], rec)
			}
		})
	}
}

// FuzzRecordJSON: any input either converts to valid JSON or is refused,
// and never panics.
func FuzzRecordJSON(f *testing.F) {
	f.Add(postRecord("seed"))
	f.Add([]byte{0xa1, 0x61, 'a', 0xd8, 0x2a, 0x41, 0x00})
	f.Add([]byte{0xa1, 0x61, 'b', 0x42, 0x01, 0x02})
	f.Fuzz(func(t *testing.T, rec []byte) {
		var rc recordJSON
		out, err := rc.appendRecord(nil, rec)
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON %q from %x", out, rec)
		}
	})
}
