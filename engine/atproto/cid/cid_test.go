package cid

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/atrelay/relay/internal/fixtures"
)

func TestDataModelFixtureCIDs(t *testing.T) {
	raw := fixtures.Read(t, "fixtures/interop/data-model/data-model-fixtures.json")
	var cases []struct {
		CBOR string `json:"cbor_base64"`
		CID  string `json:"cid"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no fixture cases")
	}
	for _, tc := range cases {
		t.Run(tc.CID, func(t *testing.T) {
			data, err := base64.RawStdEncoding.DecodeString(tc.CBOR)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Decode(tc.CID)
			if err != nil {
				t.Fatal(err)
			}
			if !c.IsBlessedDagCBOR() || !c.Verify(data) {
				t.Fatalf("fixture CID does not verify its bytes")
			}
			if got := Sum(CodecDagCBOR, data).String(); got != tc.CID {
				t.Fatalf("Sum = %s, want %s", got, tc.CID)
			}
			if got := string(c.AppendString(nil)); got != tc.CID {
				t.Fatalf("AppendString = %s", got)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	good := MustDecode("bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm")
	cases := map[string][]byte{
		"empty":       {},
		"v0":          append([]byte{0x12, 0x20}, make([]byte, 32)...),
		"truncated":   good[:20],
		"nonminimal":  {0x81, 0x00, 0x71, 0x12, 0x01, 0x00},
		"huge-digest": {0x01, 0x71, 0x12, 0xff, 0x01},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, _, err := Parse(b); err == nil {
				t.Fatalf("Parse(%x) accepted", b)
			}
		})
	}
	for _, s := range []string{"", "b", "Bafy", "zQm", "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hp", "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm1"} {
		if _, err := Decode(s); err == nil {
			t.Errorf("Decode(%q) accepted", s)
		}
	}
}

func TestParseAliasesInput(t *testing.T) {
	good := MustDecode("bafkreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm")
	buf := append(append([]byte{}, good...), 0xAA)
	c, rest, err := Parse(buf)
	if err != nil || !bytes.Equal(rest, []byte{0xAA}) {
		t.Fatalf("Parse: %v rest=%x", err, rest)
	}
	if &c[0] != &buf[0] {
		t.Fatal("Parse copied its input")
	}
	if c.Codec() != CodecRaw || !c.IsBlessed() || c.IsBlessedDagCBOR() {
		t.Fatal("raw codec not recognised")
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _ = Parse(buf) }); n != 0 {
		t.Fatalf("Parse allocates %v times", n)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(MustDecode("bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm")))
	f.Add([]byte{0x01, 0x55, 0x12, 0x20})
	f.Add([]byte{0x01, 0x71, 0x1e, 0x04, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, rest, err := Parse(b)
		if err != nil {
			return
		}
		if len(c)+len(rest) != len(b) || len(c) > MaxLen {
			t.Fatalf("bad split")
		}
		back, err := Decode(c.String())
		if err != nil || !back.Equal(c) {
			t.Fatalf("string round trip failed: %v", err)
		}
	})
}
