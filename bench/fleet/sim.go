package fleet

import (
	"fmt"
	"time"

	"github.com/atrelay/relay/bench/plc"
)

// Sim is one account simulated offline, with no host and no network: the
// same keys, repository and event logic as a live fleet account, for
// bench/generate to sign captures ahead of time. Single goroutine.
type Sim struct {
	st *accountState // owned by the goroutine using the Sim
}

// NewSim returns account number num of workload w (defaults must already
// be applied; w must stay unchanged while the Sim is used). Its DID is
// MakeDID(w.Seed, num) and its handle u<num>.test.
func NewSim(w *Workload, num int) (*Sim, error) {
	st, err := newAccountState(w, num, fmt.Sprintf("u%d.test", num))
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
