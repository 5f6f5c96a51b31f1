// Package dagcbortest turns atproto-JSON (spec §3.4: {"$link"} for CID
// links, {"$bytes"} for byte strings) into canonical DAG-CBOR, so tests can
// build exact bytes from the shared JSON fixtures. It is a test helper: it
// allocates freely and is never imported by production code.
package dagcbortest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/dagcbor"
)

// Errors for JSON that has no DAG-CBOR mapping.
var (
	ErrBadLink  = errors.New("dagcbortest: malformed $link object")
	ErrBadBytes = errors.New("dagcbortest: malformed $bytes object")
	ErrNumber   = errors.New("dagcbortest: number outside the data model")
)

// FromJSON converts one atproto-JSON document to canonical DAG-CBOR.
func FromJSON(doc []byte) ([]byte, error) {
	v, err := Parse(doc)
	if err != nil {
		return nil, err
	}
	return Append(nil, v)
}

// Parse decodes JSON keeping numbers as json.Number, the form Append takes.
func Parse(doc []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// Append encodes a value produced by Parse (or built from the same Go types:
// map[string]any, []any, string, json.Number, bool, nil; plus int and int64
// for integers, []byte for byte strings and cid.CID for links) as canonical
// DAG-CBOR. Integer-like numbers ("123.0") become
// integers; other numbers become 64-bit floats, which Validate rejects.
func Append(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return dagcbor.AppendNull(dst), nil
	case bool:
		return dagcbor.AppendBool(dst, x), nil
	case string:
		return dagcbor.AppendText(dst, x), nil
	case []byte:
		return dagcbor.AppendBytes(dst, x), nil
	case cid.CID:
		return dagcbor.AppendCIDLink(dst, x), nil
	case int:
		return dagcbor.AppendInt(dst, int64(x)), nil
	case int64:
		return dagcbor.AppendInt(dst, x), nil
	case json.Number:
		return appendNumber(dst, string(x))
	case []any:
		dst = dagcbor.AppendArrayHeader(dst, len(x))
		for _, e := range x {
			var err error
			if dst, err = Append(dst, e); err != nil {
				return nil, err
			}
		}
		return dst, nil
	case map[string]any:
		return appendObject(dst, x)
	default:
		return nil, fmt.Errorf("dagcbortest: unsupported Go type %T", v)
	}
}

func appendNumber(dst []byte, s string) ([]byte, error) {
	if !strings.ContainsAny(s, ".eE") {
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, ErrNumber
		}
		return dagcbor.AppendInt(dst, i), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, ErrNumber
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return dagcbor.AppendInt(dst, int64(f)), nil
	}
	dst = append(dst, 0xfb)
	return appendUint64BE(dst, math.Float64bits(f)), nil
}

func appendUint64BE(dst []byte, v uint64) []byte {
	for i := 7; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}

func appendObject(dst []byte, m map[string]any) ([]byte, error) {
	if l, ok := m["$link"]; ok {
		s, isStr := l.(string)
		if !isStr || len(m) != 1 {
			return nil, ErrBadLink
		}
		c, err := cid.Decode(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadLink, err)
		}
		return dagcbor.AppendCIDLink(dst, c), nil
	}
	if b, ok := m["$bytes"]; ok {
		s, isStr := b.(string)
		if !isStr || len(m) != 1 {
			return nil, ErrBadBytes
		}
		raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadBytes, err)
		}
		return dagcbor.AppendBytes(dst, raw), nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
	dst = dagcbor.AppendMapHeader(dst, len(keys))
	for _, k := range keys {
		dst = dagcbor.AppendText(dst, k)
		var err error
		if dst, err = Append(dst, m[k]); err != nil {
			return nil, err
		}
	}
	return dst, nil
}
