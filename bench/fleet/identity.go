package fleet

import (
	"fmt"
	"time"
)

// lockAccount returns did's live account, locked.
func (f *Fleet) lockAccount(did string) (*Account, error) {
	a := f.account(did)
	if a == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownAccount, did)
	}
	a.mu.Lock()
	return a, nil
}

// Home returns the host did currently lives on.
func (f *Fleet) Home(did string) (*Host, error) {
	a, err := f.lockAccount(did)
	if err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	return a.home, nil
}

// Migrate moves did's account to host to, in the order spec §13.4
// recommends: the PLC document points at to first; to then publishes
// #identity, #account active and a #sync of the current commit; the old
// host publishes #account deactivated, which a relay drops as
// non-authoritative. The repository moves with the account and its key is
// unchanged.
func (f *Fleet) Migrate(did string, to *Host) error {
	a, err := f.lockAccount(did)
	if err != nil {
		return err
	}
	defer a.mu.Unlock()
	from := a.home
	if from == to {
		return nil
	}
	if err := f.plc.Migrate(did, to.URL()); err != nil {
		return err
	}
	st := a.st
	st.now = time.Now()
	st.status = StatusActive
	s, err := st.syncEvent()
	if err != nil {
		return err
	}
	to.attach(a)
	from.detach(a)
	a.home = to
	if err := a.publishLocked([]Event{st.identityEvent(), st.accountEvent(), s}); err != nil {
		return err
	}
	st.status = StatusDeactivated
	_, err = from.publish(0, st.accountEvent().AppendFrame)
	st.status = StatusActive
	return err
}

// RotateKey gives did a new signing key: the PLC document gets the new
// key, then the home host publishes #identity and a #sync signed with it
// (the repository is rebuilt under the new key; see accountState.rotate).
// Later commits verify only with the new key.
func (f *Fleet) RotateKey(did string) error {
	a, err := f.lockAccount(did)
	if err != nil {
		return err
	}
	defer a.mu.Unlock()
	s, err := a.st.rotate(time.Now())
	if err != nil {
		return err
	}
	if err := f.plc.RotateKey(did, a.st.key.Public().Multibase()); err != nil {
		return err
	}
	return a.publishLocked([]Event{a.st.identityEvent(), s})
}

// ChangeHandle sets did's handle in the PLC and publishes #identity.
func (f *Fleet) ChangeHandle(did, handle string) error {
	a, err := f.lockAccount(did)
	if err != nil {
		return err
	}
	defer a.mu.Unlock()
	a.st.now = time.Now()
	a.st.handle = handle
	if err := f.plc.Put(did, f.doc(a.st, a.home)); err != nil {
		return err
	}
	return a.publishLocked([]Event{a.st.identityEvent()})
}
