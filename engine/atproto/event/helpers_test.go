package event_test

import (
	"bytes"
	"sort"
	"sync"
	"testing"

	"github.com/atrelay/relay/internal/dagcbortest"
	"github.com/atrelay/relay/internal/fixtures"
)

// captures caches the decompressed frames of both hosts of
// captures/realpds-2 for the whole test binary; the files are read-only,
// so sharing them between tests is safe.
var captures = sync.OnceValues(func() ([][][]byte, error) {
	var all [][][]byte
	for i := range fixtures.RealPDS2Hosts {
		frames, err := fixtures.CaptureFrames(fixtures.RealPDS2Host(i))
		if err != nil {
			return nil, err
		}
		all = append(all, frames)
	}
	return all, nil
})

func loadCaptures(t testing.TB) [][][]byte {
	t.Helper()
	all, err := captures()
	if err != nil {
		t.Fatalf("reading capture: %v", err)
	}
	return all
}

// medianCommit returns the #commit frame of median size in host 0's capture,
// the "typical commit" of the benchmarks.
func medianCommit(t testing.TB) []byte {
	var commits [][]byte
	for _, f := range loadCaptures(t)[0] {
		if bytes.HasPrefix(f, []byte("\xa2\x61t\x67#commit")) {
			commits = append(commits, f)
		}
	}
	sort.Slice(commits, func(i, j int) bool { return len(commits[i]) < len(commits[j]) })
	return commits[len(commits)/2]
}

// fixtureFrame is one message of shared/fixtures/indigo/cmd/relay/testing/testdata.
type fixtureFrame struct {
	file  string
	index int
	frame []byte
}

// relayFixtureFiles are the scenario files of indigo's relay tests
// (indigo @ 4b983a7); each message carries a frame as atproto-JSON.
var relayFixtureFiles = []string{
	"account_lifecycle.json", "deactivation.json", "legacy.json", "post_lifecycle.json",
	"post_lifecycle_legacy.json", "rev_ordering.json", "seq_ordering.json",
}

// relayFixtureFrames converts every fixture frame to CBOR. The JSON was
// written by Go's encoding/json from cbor-gen structs, where a nil Blobs
// slice prints as null although cbor-gen puts an empty array on the wire;
// blobs: null is therefore mapped to [] to rebuild the wire bytes.
func relayFixtureFrames(t testing.TB) []fixtureFrame {
	var out []fixtureFrame
	for _, file := range relayFixtureFiles {
		raw := fixtures.Read(t, "fixtures/indigo/cmd/relay/testing/testdata/"+file)
		doc, err := dagcbortest.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		msgs := doc.(map[string]any)["messages"].([]any)
		for i, m := range msgs {
			fr := m.(map[string]any)["frame"].(map[string]any)
			body := fr["body"].(map[string]any)
			if v, ok := body["blobs"]; ok && v == nil {
				body["blobs"] = []any{}
			}
			b, err := dagcbortest.Append(nil, fr["header"])
			if err != nil {
				t.Fatal(err)
			}
			if b, err = dagcbortest.Append(b, body); err != nil {
				t.Fatal(err)
			}
			out = append(out, fixtureFrame{file, i, b})
		}
	}
	return out
}
