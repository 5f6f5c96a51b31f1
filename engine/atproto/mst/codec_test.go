package mst

import (
	"bytes"
	"errors"
	"testing"

	"github.com/atrelay/relay/engine/atproto/cid"
)

// rawEnt is one entry written byte for byte, to build invalid nodes.
type rawEnt struct {
	k    string
	p    int
	t, v cid.CID
}

// rawNode encodes entries exactly as given (no prefix computation).
func rawNode(left cid.CID, ents ...rawEnt) []byte {
	b := []byte{0xa2, 0x61, 'e'}
	b = appendHead(b, majorArray, uint64(len(ents)))
	for _, e := range ents {
		b = append(b, 0xa4, 0x61, 'k')
		b = appendHead(b, majorBytes, uint64(len(e.k)))
		b = append(b, e.k...)
		b = append(b, 0x61, 'p')
		b = appendHead(b, majorUint, uint64(e.p))
		b = append(b, 0x61, 't')
		b = appendLink(b, e.t)
		b = append(b, 0x61, 'v')
		b = appendLink(b, e.v)
	}
	b = append(b, 0x61, 'l')
	return appendLink(b, left)
}

var (
	testVal  = cid.Sum(cid.CodecDagCBOR, []byte("record"))
	testNode = cid.Sum(cid.CodecDagCBOR, []byte("node"))
	testRaw  = cid.Sum(cid.CodecRaw, []byte("blob"))
)

func TestDecodeNodeValid(t *testing.T) {
	f := func(name string, b []byte, keys ...string) {
		t.Helper()
		var nd NodeData
		if _, err := DecodeNode(&nd, b, nil); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(nd.Entries) != len(keys) {
			t.Fatalf("%s: %d entries, want %d", name, len(nd.Entries), len(keys))
		}
		for i, k := range keys {
			if string(nd.Entries[i].Key) != k {
				t.Fatalf("%s: key %d = %q, want %q", name, i, nd.Entries[i].Key, k)
			}
		}
		if got := AppendNode(nil, &nd); !bytes.Equal(got, b) {
			t.Fatalf("%s: re-encoding differs:\n got %x\nwant %x", name, got, b)
		}
	}
	f("empty", []byte(emptyNode))
	f("one", rawNode(nil, rawEnt{k: "a.b/c", v: testVal}), "a.b/c")
	f("prefix", rawNode(testNode,
		rawEnt{k: "a.b/c1", v: testVal, t: testNode},
		rawEnt{k: "2", p: 5, v: testVal},
		rawEnt{k: "x.y/z", p: 0, v: testRaw}), "a.b/c1", "a.b/c2", "x.y/z")
	f("extend", rawNode(nil, rawEnt{k: "a.b/c", v: testVal}, rawEnt{k: "d", p: 5, v: testVal}), "a.b/c", "a.b/cd")
}

func TestDecodeNodeRejects(t *testing.T) {
	f := func(name string, b []byte, want error) {
		t.Helper()
		var nd NodeData
		_, err := DecodeNode(&nd, b, nil)
		if !errors.Is(err, want) {
			t.Errorf("%s: err = %v, want %v", name, err, want)
		}
	}
	good := rawNode(nil, rawEnt{k: "a.b/c", v: testVal})
	f("empty input", nil, ErrNodeEncoding)
	f("trailing byte", append(bytes.Clone(good), 0), ErrNodeEncoding)
	f("truncated", good[:len(good)-1], ErrNodeEncoding)
	f("keys swapped l,e", []byte{0xa2, 0x61, 'l', 0xf6, 0x61, 'e', 0x80}, ErrNodeEncoding)
	f("three keys", []byte{0xa3, 0x61, 'e', 0x80, 0x61, 'l', 0xf6}, ErrNodeEncoding)
	f("non-minimal array len", []byte{0xa2, 0x61, 'e', 0x98, 0x00, 0x61, 'l', 0xf6}, ErrNodeEncoding)
	f("indefinite array", []byte{0xa2, 0x61, 'e', 0x9f, 0xff, 0x61, 'l', 0xf6}, ErrNodeEncoding)
	f("null e", []byte{0xa2, 0x61, 'e', 0xf6, 0x61, 'l', 0xf6}, ErrNodeEncoding)
	f("undefined l", []byte{0xa2, 0x61, 'e', 0x80, 0x61, 'l', 0xf7}, ErrNodeEncoding)
	f("huge array", []byte{0xa2, 0x61, 'e', 0x9a, 0x00, 0x01, 0x00, 0x00, 0x61, 'l', 0xf6}, ErrTooManyEntries)
	f("first p not 0", rawNode(nil, rawEnt{k: "a.b/c", p: 1, v: testVal}), ErrBadPrefix)
	f("p beyond prev", rawNode(nil, rawEnt{k: "a.b/c", v: testVal}, rawEnt{k: "d", p: 6, v: testVal}), ErrBadPrefix)
	f("p not maximal", rawNode(nil, rawEnt{k: "a.b/c", v: testVal}, rawEnt{k: "/d", p: 3, v: testVal}), ErrBadPrefix)
	f("unsorted", rawNode(nil, rawEnt{k: "b.b/c", v: testVal}, rawEnt{k: "a.b/c", v: testVal}), ErrKeyOrder)
	f("duplicate", rawNode(nil, rawEnt{k: "a.b/c", v: testVal}, rawEnt{k: "", p: 5, v: testVal}), ErrKeyOrder)
	f("empty key", rawNode(nil, rawEnt{k: "", v: testVal}), ErrKeyInvalid)
	f("bad key byte", rawNode(nil, rawEnt{k: "a.b/c\x00", v: testVal}), ErrKeyInvalid)
	f("no slash", rawNode(nil, rawEnt{k: "abc", v: testVal}), ErrKeyInvalid)
	f("key too long", rawNode(nil, rawEnt{k: "a/" + string(bytes.Repeat([]byte("x"), MaxKeyLen)), v: testVal}), ErrNodeEncoding)
	f("raw-codec subtree", rawNode(nil, rawEnt{k: "a.b/c", v: testVal, t: testRaw}), ErrLinkNotBlessed)
	f("raw-codec left", rawNode(testRaw), ErrLinkNotBlessed)
	f("null value", []byte{0xa2, 0x61, 'e', 0x81, 0xa4, 0x61, 'k', 0x45, 'a', '.', 'b', '/', 'c', 0x61, 'p', 0x00,
		0x61, 't', 0xf6, 0x61, 'v', 0xf6, 0x61, 'l', 0xf6}, ErrNodeEncoding)
	bad := bytes.Clone(good)
	bad[bytes.Index(bad, []byte{0xd8, 0x2a})+5] = 0x02 // CIDv2
	f("bad value CID", bad, ErrBadCID)
	noZero := bytes.Clone(good)
	noZero[bytes.Index(noZero, []byte{0xd8, 0x2a})+4] = 0x01 // link payload must start 00
	f("link without 00", noZero, ErrNodeEncoding)
	f("text key", []byte{0xa2, 0x61, 'e', 0x81, 0xa4, 0x61, 'k', 0x65, 'a', '.', 'b', '/', 'c'}, ErrNodeEncoding)
}

func TestCheckNode(t *testing.T) {
	decode := func(b []byte) *NodeData {
		var nd NodeData
		if _, err := DecodeNode(&nd, b, nil); err != nil {
			t.Fatal(err)
		}
		return &nd
	}
	k0, k1 := "A0/374913", "B1/986427" // heights 0 and 1 (example_keys.txt)
	f := func(name string, nd *NodeData, level int, lo, hi string, root bool, want error) {
		t.Helper()
		var l, h []byte
		if lo != "" {
			l = []byte(lo)
		}
		if hi != "" {
			h = []byte(hi)
		}
		if err := checkNode(nd, level, l, h, root); !errors.Is(err, want) {
			t.Errorf("%s: err = %v, want %v", name, err, want)
		}
	}
	f("ok leaf", decode(rawNode(nil, rawEnt{k: k0, v: testVal})), 0, "", "", true, nil)
	f("wrong height", decode(rawNode(nil, rawEnt{k: k1, v: testVal})), 0, "", "", false, ErrKeyHeight)
	f("child below 0", decode(rawNode(testNode, rawEnt{k: k0, v: testVal})), 0, "", "", false, ErrChildBelowZero)
	f("below lo", decode(rawNode(nil, rawEnt{k: k0, v: testVal})), 0, "A0/9", "", false, ErrKeyRange)
	f("equal hi", decode(rawNode(nil, rawEnt{k: k0, v: testVal})), 0, "", k0, false, ErrKeyRange)
	f("empty non-root", decode([]byte(emptyNode)), 1, "", "", false, ErrEmptyNode)
	f("untrimmed root", decode(rawNode(testNode)), 1, "", "", true, ErrRootNotTrimmed)
	f("bridge", decode(rawNode(testNode)), 1, "", "", false, nil)
}

func TestValidKey(t *testing.T) {
	for _, k := range []string{"app.bsky.feed.post/3lmxjza3h2i27", "a/b", "A0/374913", "com.ex.rec/pre:fix", "a.b/~x_y-z.w"} {
		if !ValidKey([]byte(k)) {
			t.Errorf("ValidKey(%q) = false", k)
		}
	}
	long := "a/" + string(bytes.Repeat([]byte("x"), MaxKeyLen-2))
	if !ValidKey([]byte(long)) || ValidKey([]byte(long+"x")) {
		t.Error("MaxKeyLen boundary wrong")
	}
	for _, k := range []string{"", "/", "a/", "/b", "a/b/c", "ab", "a/.", "a/..", "a b/c", "a/é", "a/b\n"} {
		if ValidKey([]byte(k)) {
			t.Errorf("ValidKey(%q) = true", k)
		}
	}
}
