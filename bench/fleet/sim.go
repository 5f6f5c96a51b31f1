package fleet

import (
	"fmt"
	"time"

	"github.com/atrelay/relay/bench/plc"
	"github.com/atrelay/relay/engine/atproto/event"
)

// Sim is one account simulated offline, with no host and no network: the
// same keys, repository and event logic as a live fleet account, for
// bench/generate to sign captures ahead of time. It keeps no record blocks
// and no past commits (about 3 KiB with a few records), since a generator
// may hold a million. Single goroutine.
type Sim struct {
	st *accountState // owned by the goroutine using the Sim
}

// NewSim returns account number num of workload w (defaults must already
// be applied; w must stay unchanged while the Sim is used). Its DID is
// MakeDID(w.Seed, num) and its handle u<num>.test.
func NewSim(w *Workload, num int) (*Sim, error) {
	st, err := newAccountState(w, num, fmt.Sprintf("u%d.test", num), true)
	if err != nil {
		return nil, err
	}
	return &Sim{st: st}, nil
}

// DID returns the account's DID.
func (s *Sim) DID() string { return s.st.did }

// Doc returns the account's PLC document with its PDS at pdsURL.
func (s *Sim) Doc(pdsURL string) plc.Doc {
	return plc.Doc{Handle: s.st.handle, PDS: pdsURL, Key: s.st.key.Public().Multibase(), KeyType: plc.KeyTypeMultikey}
}

// Genesis returns the account-creation events (#identity, #account,
// the empty #commit, #sync), stamped at now.
func (s *Sim) Genesis(now time.Time) ([]Event, error) { return s.st.genesis(now) }

// Step executes one planned action at now (see Planner); an inactive
// account is reactivated instead.
func (s *Sim) Step(kind ActionKind, now time.Time) ([]Event, error) { return s.st.step(kind, now) }

// MaxPreexistRecords bounds Preexist's records: one commit's ops.
const MaxPreexistRecords = event.DefaultMaxOps

// Preexist gives the account the history it had before a capture starts,
// instead of Genesis: a repository of records posts (0..MaxPreexistRecords)
// in one commit at at, whose events nobody sees. The account's first event
// in the capture then has a since and a prevData a relay that starts now
// cannot check, as on the real network, where a relay starts long after
// its accounts were created.
func (s *Sim) Preexist(at time.Time, records int) error {
	if records < 0 || records > MaxPreexistRecords {
		return fmt.Errorf("%w: %d pre-existing records not in 0..%d", ErrBadWorkload, records, MaxPreexistRecords)
	}
	return s.st.preexist(at, records)
}
