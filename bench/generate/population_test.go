package generate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"testing"
	"time"

	"github.com/atrelay/relay/bench/fleet"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/engine/verify"
)

// snapshotIDs serves a capture's snapshot to the validator, as a relay's
// resolver would after asking the fake PLC.
type snapshotIDs map[string]identity.Identity

func (s snapshotIDs) Lookup(_ context.Context, did string) (identity.Identity, error) {
	id, ok := s[did]
	if !ok {
		return identity.Identity{}, identity.ErrNotFound
	}
	return id, nil
}

func (snapshotIDs) Purge(string) {}

// TestPopulation generates a capture of pre-existing accounts and checks
// what a relay starting with it sees: every account's document, no account
// creation, first commits with since and prevData that the relay's own
// validator accepts for an account it has no state for, host authority
// from the document, and receive times spaced per event.
func TestPopulation(t *testing.T) {
	const accounts, actions = 2000, 3000
	opts := Options{Workload: fleet.Workload{Hosts: 7, Seed: 3, EventsPerSecond: 500}, Actions: actions,
		Population: Population{Accounts: accounts}}
	c, _, st := generate(t, opts)
	if st.Accounts != accounts || len(c.Identities) != accounts {
		t.Fatalf("stats %+v, %d documents; want %d accounts", st, len(c.Identities), accounts)
	}
	// Skew 0.7 over 2,000 accounts and 3,000 actions touches about 60 %.
	if st.Touched < accounts/2 || st.Touched > accounts*3/4 {
		t.Errorf("%d of %d accounts touched, want 50–75 %%", st.Touched, accounts)
	}
	ids := snapshotIDs{}
	for did, doc := range c.Identities {
		id, err := identity.ParseDocument(did, doc, true) // hosts are localhost:PORT
		if err != nil {
			t.Fatal(err)
		}
		ids[did] = id
	}
	it, err := c.Records()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	val := verify.New(verify.Config{})
	var dec event.Decoder
	var m event.Message
	seen := map[string]bool{}
	var first, frames int
	var prev int64
	for {
		rec, err := it.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if frames > 0 && rec.RecvTime-prev != int64(2*time.Millisecond) {
			t.Fatalf("frame %d received %v after the previous one, want 2ms (500 events/s)", frames, time.Duration(rec.RecvTime-prev))
		}
		prev = rec.RecvTime
		frames++
		if err := dec.Decode(rec.Frame, &m); err != nil {
			t.Fatal(err)
		}
		if m.Kind != event.KindCommit || seen[string(m.Commit.Repo)] {
			if m.Kind == event.KindCommit && m.Commit.Since == nil {
				t.Fatalf("a commit of %s without since", m.Commit.Repo)
			}
			continue
		}
		seen[string(m.Commit.Repo)] = true
		if m.Commit.Since == nil || m.Commit.PrevData == nil {
			t.Fatalf("first commit of %s: since %q prevData %v, want both (the account pre-exists)", m.Commit.Repo, m.Commit.Since, m.Commit.PrevData)
		}
		host := fmt.Sprintf("localhost:%d", BasePort+rec.Source)
		vd := val.Commit(context.Background(), &m.Commit, host, &verify.AccountState{}, ids)
		if vd.Action != verify.Accept || vd.Break != verify.BreakNone {
			t.Fatalf("first commit of %s on %s: %v %v %v", m.Commit.Repo, host, vd.Action, vd.Reason, vd.Err)
		}
		first++
	}
	if frames != int(st.Frames) || first < st.Touched/2 {
		t.Fatalf("%d frames (stats %d), %d first commits of %d touched accounts", frames, st.Frames, first, st.Touched)
	}
}

// TestPowerLaw checks the sampler against the closed form it inverts.
func TestPowerLaw(t *testing.T) {
	for _, s := range []float64{0.7, 1, 1.3} {
		const n, draws = 1000, 200_000
		p := newPowerLaw(n, s)
		counts := make([]int, n)
		for i := range draws {
			counts[p.rank(hashUnit(9, uint64(i)))]++
		}
		// F(x) is the share of draws below rank x-1.
		F := func(x float64) float64 {
			if s == 1 {
				return math.Log(x) / math.Log(n+1)
			}
			return (math.Pow(x, 1-s) - 1) / (math.Pow(n+1, 1-s) - 1)
		}
		for _, k := range []int{0, 1, 10, 100} {
			want := (F(float64(k+2)) - F(float64(k+1))) * draws
			if got := float64(counts[k]); math.Abs(got-want) > 5*math.Sqrt(want)+1 {
				t.Errorf("s=%v rank %d: %v draws, want %.0f", s, k, got, want)
			}
		}
		if p.rank(0) != 0 || p.rank(math.Nextafter(1, 0)) != n-1 {
			t.Errorf("s=%v: ends map to %d and %d", s, p.rank(0), p.rank(math.Nextafter(1, 0)))
		}
	}
}

func TestPopulationBadOptions(t *testing.T) {
	for _, pop := range []Population{{Accounts: -1}, {Accounts: 10, Skew: -1}, {Accounts: 10, InitialRecords: 201},
		{Accounts: MaxPopulation + 1}} {
		if _, err := Generate(io.Discard, Options{Population: pop}); !errors.Is(err, ErrBadOptions) {
			t.Errorf("%+v: %v", pop, err)
		}
	}
}
