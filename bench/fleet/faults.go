package fleet

import (
	"errors"
	"fmt"
	"time"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/dagcbor"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/internal/repo"
)

// FaultKind is one kind of misbehaviour a host can be told to commit. The
// doc of each constant says what it sends and what a correct relay does.
type FaultKind uint8

// The fault kinds. "Live-only" frames go only to connections open at
// injection time and consume no seq; cursor replay never repeats them.
const (
	// FaultMalformedCBOR sends a live-only frame whose body is not
	// well-formed CBOR (a reserved head byte). Relay: hard error, drop the
	// connection (spec §9.2), reconnect with its cursor; nothing emitted.
	FaultMalformedCBOR FaultKind = iota
	// FaultTruncated sends a live-only copy of the host's newest event cut
	// in half. Relay: as FaultMalformedCBOR.
	FaultTruncated
	// FaultOversize sends a live-only frame of OversizeBytes (> 5,000,000).
	// Relay: kill the connection at its read limit (§9.2, §11), reconnect.
	FaultOversize
	// FaultForgedSignature publishes a real next commit of an account
	// re-signed with a stranger's key (new commit CID, same rev, data and
	// ops), immediately followed by the genuine commit. Relay: the forged
	// one fails the signature check after one re-resolution and is
	// dropped (§12.2 step 9); the genuine one passes with an intact chain.
	FaultForgedSignature
	// FaultForeignAccount publishes, on this host, a copy of a commit of an
	// account that lives on another host (the home host publishes it too).
	// Relay: drop the copy for host authority (§8.3, §12.2 step 3).
	FaultForeignAccount
	// FaultRevReplay re-publishes an account's newest commit with a new
	// seq. Relay: drop it as a stale rev (§12.2 step 5).
	FaultRevReplay
	// FaultRevRollback re-publishes an account's second-newest commit (a
	// lower rev) with a new seq. Relay: drop it as a stale rev (§12.2 step 5).
	FaultRevRollback
	// FaultBrokenChain makes two commits and publishes only the second, so
	// its since/prevData name a commit nobody saw. Relay: pass it on and
	// count a chain break (§12.2 step 13); it is not invalid.
	FaultBrokenChain
	// FaultSeqReset sends a live-only copy of the newest event re-stamped
	// with seq 1: the host's seq goes backwards on the connection. Relay:
	// skip the frame (seq ≤ previous, §9.3, §12.2 step 1).
	FaultSeqReset
	// FaultSlowWrite publishes a valid write commit whose frame trickles out
	// in 8 pieces 5 ms apart. Relay: accept it (no drop, no reconnect).
	FaultSlowWrite
	// FaultDisconnect closes every subscriber's TCP socket without a close
	// frame once it has sent what came before. Relay: reconnect with its
	// cursor, losing and duplicating nothing.
	FaultDisconnect
	numFaultKinds
)

// OversizeBytes is the size of a FaultOversize frame: one byte past the
// reference relay's 5,000,000-byte read limit, plus framing.
const OversizeBytes = 5_000_001 + 64

// AllFaults lists every fault kind in order.
func AllFaults() []FaultKind {
	out := make([]FaultKind, numFaultKinds)
	for i := range out {
		out[i] = FaultKind(i)
	}
	return out
}

var faultNames = [numFaultKinds]string{
	"malformed-cbor", "truncated", "oversize", "forged-signature", "foreign-account",
	"rev-replay", "rev-rollback", "broken-chain", "seq-reset", "slow-write", "disconnect",
}

// String names the fault (a metric-label-like token).
func (k FaultKind) String() string {
	if k < numFaultKinds {
		return faultNames[k]
	}
	return "unknown"
}

// FaultCounts counts injected faults, indexed by FaultKind.
type FaultCounts [numFaultKinds]int64

// ErrNoEvents: a fault that copies an event found none in the history.
var ErrNoEvents = errors.New("fleet: host has no event to copy")

// FaultCounts returns how many faults of each kind this host injected.
func (h *Host) FaultCounts() FaultCounts {
	var c FaultCounts
	for i := range c {
		c[i] = h.faults[i].Load()
	}
	return c
}

// FaultCounts sums every host's fault counters.
func (f *Fleet) FaultCounts() FaultCounts {
	var c FaultCounts
	for _, h := range f.hosts {
		hc := h.FaultCounts()
		for i := range c {
			c[i] += hc[i]
		}
	}
	return c
}

// Inject makes the host commit one fault of kind k now, counting it only
// when it was sent. Faults on accounts use the host's first active account;
// FaultForeignAccount uses the first active account of the next host.
func (h *Host) Inject(k FaultKind) error {
	err := h.inject(k)
	if err == nil {
		h.faults[k].Add(1)
	}
	return err
}

func (h *Host) inject(k FaultKind) error {
	switch k {
	case FaultMalformedCBOR:
		frame := append(appendHeaderOnly(nil, "#commit"), 0xa1, 0x63, 's', 'e', 'q', 0x1c)
		return h.addLive(0, frame)
	case FaultTruncated, FaultSeqReset:
		last, err := h.newestEvent()
		if err != nil {
			return err
		}
		if k == FaultTruncated {
			return h.addLive(0, last[:len(last)/2])
		}
		frame, err := event.RewriteSeq(nil, last, 1)
		if err != nil {
			return err
		}
		return h.addLive(0, frame)
	case FaultOversize:
		frame := appendHeaderOnly(nil, "#commit")
		frame = dagcbor.AppendMapHeader(frame, 1)
		frame = dagcbor.AppendText(frame, "blocks")
		frame = dagcbor.AppendBytes(frame, make([]byte, OversizeBytes-len(frame)-6))
		return h.addLive(0, frame)
	case FaultDisconnect:
		return h.addLive(flagDisconnect, nil)
	case FaultForeignAccount:
		if len(h.fleet.hosts) < 2 {
			return ErrNoAccount
		}
		other := h.fleet.hosts[(h.Index+1)%len(h.fleet.hosts)]
		return other.withActive(func(a *Account) error {
			c, err := a.st.commit(a.st.writes())
			if err != nil {
				return err
			}
			if err := a.publishLocked([]Event{c}); err != nil {
				return err
			}
			cp := *c.commit
			_, err = h.publish(0, Event{commit: &cp}.AppendFrame)
			return err
		})
	}
	return h.withActive(func(a *Account) error {
		switch k {
		case FaultForgedSignature:
			c, err := a.st.commit(a.st.writes())
			if err != nil {
				return err
			}
			forged, err := forge(c.commit, a.st.repo.Data())
			if err != nil {
				return err
			}
			return a.publishLocked([]Event{{commit: forged}, c})
		case FaultRevReplay, FaultRevRollback:
			for a.st.lastCommits[0] == nil {
				c, err := a.st.commit(a.st.writes())
				if err != nil {
					return err
				}
				if err := a.publishLocked([]Event{c}); err != nil {
					return err
				}
			}
			old := *a.st.lastCommits[1]
			if k == FaultRevRollback {
				old = *a.st.lastCommits[0]
			}
			return a.publishLocked([]Event{{commit: &old}})
		case FaultBrokenChain:
			if _, err := a.st.commit(a.st.writes()); err != nil {
				return err
			}
			c, err := a.st.commit(a.st.writes())
			if err != nil {
				return err
			}
			return a.publishLocked([]Event{c})
		case FaultSlowWrite:
			c, err := a.st.commit(a.st.writes())
			if err != nil {
				return err
			}
			_, err = a.home.publish(flagSlow, c.AppendFrame)
			return err
		}
		return fmt.Errorf("%w: %d", ErrUnknownFault, k)
	})
}

// withActive runs fn with the host's first active account locked.
func (h *Host) withActive(fn func(a *Account) error) error {
	h.mu.Lock()
	accts := append([]*Account(nil), h.mu.accounts...)
	h.mu.Unlock()
	for _, a := range accts {
		a.mu.Lock()
		if a.home == h && a.st.status == StatusActive {
			a.st.now = time.Now()
			err := fn(a)
			a.mu.Unlock()
			return err
		}
		a.mu.Unlock()
	}
	return ErrNoAccount
}

// newestEvent returns the frame of the newest sequenced event.
func (h *Host) newestEvent() ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for pos := h.mu.hist.end() - 1; pos >= h.mu.hist.first; pos-- {
		if e := h.mu.hist.at(pos); e.flags&(flagLiveOnly|flagDisconnect) == 0 {
			return e.frame, nil
		}
	}
	return nil, ErrNoEvents
}

// appendHeaderOnly appends the canonical message header {t, op: 1}.
func appendHeaderOnly(dst []byte, t string) []byte {
	dst = dagcbor.AppendMapHeader(dst, 2)
	dst = dagcbor.AppendText(dst, "t")
	dst = dagcbor.AppendText(dst, t)
	dst = dagcbor.AppendText(dst, "op")
	return dagcbor.AppendInt(dst, 1)
}

// forge returns a copy of c whose commit block carries a signature by a
// fresh random key: same did, rev and data, so only the signature check
// can tell it apart. data is the commit's MST root.
func forge(c *event.Commit, data cid.CID) (*event.Commit, error) {
	var rd car.Reader
	if err := rd.Reset(c.Blocks, car.Options{}); err != nil {
		return nil, err
	}
	stranger, err := atcrypto.GeneratePrivateKey(atcrypto.K256)
	if err != nil {
		return nil, err
	}
	sig, err := stranger.Sign(repo.AppendCommitObject(nil, c.Repo, c.Rev, data, nil))
	if err != nil {
		return nil, err
	}
	block := repo.AppendCommitObject(nil, c.Repo, c.Rev, data, sig)
	commitCID := cid.Sum(cid.CodecDagCBOR, block)
	blocks := car.AppendHeader(nil, commitCID)
	blocks = car.AppendBlock(blocks, commitCID, block)
	for _, b := range rd.Blocks {
		if !b.CID.Equal(c.Commit) {
			blocks = car.AppendBlock(blocks, b.CID, b.Data)
		}
	}
	out := *c
	out.Commit, out.Blocks = commitCID, blocks
	return &out, nil
}
