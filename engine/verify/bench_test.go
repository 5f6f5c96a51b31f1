package verify

import (
	"context"
	"testing"
	"time"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/internal/repo"
)

// benchCase is one frame to validate repeatedly: the frame, the state
// before it, the host and the identities.
type benchCase struct {
	frame []byte
	st    AccountState
	host  string
	ids   Identities
	now   func() time.Time
}

// typicalCapture returns the typical single-create commit of the capture
// (secp256k1).
func typicalCapture(tb testing.TB) benchCase {
	c := getCapture(tb)
	for _, s := range getSamples(tb) {
		if s.name == "typical single create" {
			return benchCase{frame: s.frame, st: s.st, host: captureHosts[0],
				ids: &fakeIDs{docs: c.ids, cache: map[string]identity.Identity{}},
				now: func() time.Time { return captureNow }}
		}
	}
	tb.Fatal("no typical sample")
	return benchCase{}
}

// typicalRepo returns a single-create commit on a 1,000-record repository
// written by internal/repo with a P-256 key.
func typicalRepo(tb testing.TB) benchCase {
	w := newWorld(tb, atcrypto.P256, 1000)
	ev := w.apply([]repo.Write{w.create()})
	return benchCase{frame: event.AppendCommit(nil, ev), st: w.st, host: worldHost, ids: w.ids,
		now: func() time.Time { return w.now.Add(time.Second) }}
}

// run decodes and validates bc.frame once.
func (bc *benchCase) run(tb testing.TB, v *Validator, d *event.Decoder, m *event.Message) {
	if err := d.Decode(bc.frame, m); err != nil {
		tb.Fatal(err)
	}
	if vd := v.Commit(context.Background(), &m.Commit, bc.host, &bc.st, bc.ids); vd.Action != Accept {
		tb.Fatalf("%s", vd)
	}
}

// Validation of a repeated account allocates nothing: decode, CAR index,
// commit decode, unsigned bytes, signature, inversion.
func TestValidateZeroAlloc(t *testing.T) {
	for name, mk := range map[string]func(testing.TB) benchCase{"k256-capture": typicalCapture, "p256-repo": typicalRepo} {
		t.Run(name, func(t *testing.T) {
			bc := mk(t)
			v := New(Config{Now: bc.now})
			var d event.Decoder
			var m event.Message
			bc.run(t, v, &d, &m) // grow the scratch
			allocs := testing.AllocsPerRun(50, func() { bc.run(t, v, &d, &m) })
			limit := 0.0
			if name == "p256-repo" {
				// The standard library's P-256 verification allocates
				// internally; the pipeline may add nothing to it.
				limit = p256VerifyAllocs(t, bc)
			}
			if allocs > limit {
				t.Fatalf("%.1f allocs per validated commit, want ≤ %.0f", allocs, limit)
			}
		})
	}
}

// signed validates the case's commit once and returns what its signature
// check verifies: the signing key, the unsigned commit bytes and the
// signature.
func (bc *benchCase) signed(tb testing.TB) (atcrypto.PublicKey, []byte, []byte) {
	v := New(Config{Now: bc.now})
	var d event.Decoder
	var m event.Message
	bc.run(tb, v, &d, &m)
	id, _ := bc.ids.Lookup(context.Background(), string(m.Commit.Repo))
	return id.Key, v.obj.appendUnsigned(nil, v.block), v.obj.sig
}

// p256VerifyAllocs measures what a bare P-256 signature check allocates,
// the floor for a P-256 validation.
func p256VerifyAllocs(t *testing.T, bc benchCase) float64 {
	key, unsigned, sig := bc.signed(t)
	var ver atcrypto.Verifier
	return testing.AllocsPerRun(50, func() {
		if err := ver.Verify(key, unsigned, sig); err != nil {
			t.Fatal(err)
		}
	})
}

func BenchmarkValidateCommit(b *testing.B) {
	for _, name := range []string{"k256-capture", "p256-repo"} {
		for _, sig := range []bool{true, false} {
			label := name + "/full"
			if !sig {
				label = name + "/nosig"
			}
			b.Run(label, func(b *testing.B) {
				bc := benchFor(b, name)
				v := New(Config{Now: bc.now})
				v.skipSig = !sig
				var d event.Decoder
				var m event.Message
				bc.run(b, v, &d, &m)
				b.SetBytes(int64(len(bc.frame)))
				b.ReportAllocs()
				for b.Loop() {
					bc.run(b, v, &d, &m)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
			})
		}
	}
}

// BenchmarkVerifySignature is the bare signature check of the same
// commits, the denominator of the pipeline efficiency.
func BenchmarkVerifySignature(b *testing.B) {
	for _, name := range []string{"k256-capture", "p256-repo"} {
		b.Run(name, func(b *testing.B) {
			bc := benchFor(b, name)
			key, unsigned, sig := bc.signed(b)
			var ver atcrypto.Verifier
			b.ReportAllocs()
			for b.Loop() {
				if err := ver.Verify(key, unsigned, sig); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
		})
	}
}

func benchFor(b *testing.B, name string) benchCase {
	if name == "k256-capture" {
		return typicalCapture(b)
	}
	return typicalRepo(b)
}
