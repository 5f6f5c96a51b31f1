package jetstream

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"reflect"
	"strconv"
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
// without allocating.
func TestRecordAllocs(t *testing.T) {
	if streamtest.Race {
		t.Skip("the race detector allocates")
	}
	rec := postRecord("hello world, a record of ordinary size with some text in it")
	var rc recordJSON
	dst, _ := rc.appendRecord(nil, rec)
	if n := testing.AllocsPerRun(100, func() {
		dst, _ = rc.appendRecord(dst[:0], rec)
	}); n != 0 {
		t.Fatalf("%v allocations per record", n)
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
