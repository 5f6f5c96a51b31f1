package fleet

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/atproto/mst"
	"github.com/atrelay/relay/engine/atproto/syntax"
	"github.com/atrelay/relay/internal/repo"
)

// Account statuses an account can be in (the #account status values).
const (
	StatusActive      = ""
	StatusDeactivated = "deactivated"
	StatusDeleted     = "deleted"
)

// postCollection is the only collection accounts write: every record is an
// app.bsky.feed.post (repo.PostRecord) of the workload's size.
const postCollection = "app.bsky.feed.post"

// plcEncoding is did:plc's base32 (lower case, no padding); read-only.
var plcEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// MakeDID returns the reproducible did:plc of account number n under seed:
// 24 base32 characters of SHA-256(seed ‖ n), the shape of a real PLC DID.
func MakeDID(seed uint64, n int) string {
	var in [16]byte
	binary.BigEndian.PutUint64(in[:8], seed)
	binary.BigEndian.PutUint64(in[8:], uint64(n))
	sum := sha256.Sum256(in[:])
	return "did:plc:" + plcEncoding.EncodeToString(sum[:15])
}

// MakeKey returns the reproducible signing key of account number n
// (generation g counts rotations) under seed.
func MakeKey(c atcrypto.Curve, seed uint64, n, g int) (*atcrypto.PrivateKey, error) {
	var in [28]byte
	copy(in[:4], "key!")
	binary.BigEndian.PutUint64(in[4:12], seed)
	binary.BigEndian.PutUint64(in[12:20], uint64(n))
	binary.BigEndian.PutUint64(in[20:], uint64(g))
	for i := byte(0); ; i++ {
		sum := sha256.Sum256(append(in[:], i))
		if k, err := atcrypto.ParsePrivateKey(c, sum[:]); err == nil {
			return k, nil
		} else if i == 255 {
			return nil, err
		}
	}
}

// Event is one event an account action produced, not yet sequenced.
// Exactly one pointer is set. It is owned by whoever received it.
type Event struct {
	commit   *event.Commit
	sync     *event.Sync
	identity *event.Identity
	account  *event.Account
}

// AppendFrame appends the event's canonical frame with the given seq.
func (o Event) AppendFrame(dst []byte, seq int64) []byte {
	switch {
	case o.commit != nil:
		o.commit.Seq = seq
		return event.AppendCommit(dst, o.commit)
	case o.sync != nil:
		o.sync.Seq = seq
		return event.AppendSync(dst, o.sync)
	case o.identity != nil:
		o.identity.Seq = seq
		return event.AppendIdentity(dst, o.identity)
	default:
		o.account.Seq = seq
		return event.AppendAccount(dst, o.account)
	}
}

// accountState is the PDS side of one account: key, handle, repository and
// status. It is the part the live fleet and the offline generator share.
// Single goroutine (the live Account guards it with its mutex).
type accountState struct {
	did    string
	num    int // account number under the workload seed
	w      *Workload
	keyGen int
	key    *atcrypto.PrivateKey
	handle string
	status string
	repo   *repo.Repo
	rkeys  []string   // record keys held, for update/delete picks
	rng    *rand.Rand // per account, so plans replay identically in parallel
	now    time.Time  // time of the action being executed; the repo's clock
	// lastCommits are the two newest commits, oldest first, kept for the
	// rev replay and rollback faults (live accounts only).
	lastCommits [2]*event.Commit
	// offline marks a Sim: no faults to replay, no getRepo to serve, so
	// it keeps neither lastCommits nor record blocks (a generator may hold
	// a million of them).
	offline bool
}

func newAccountState(w *Workload, num int, handle string, offline bool) (*accountState, error) {
	a := &accountState{did: MakeDID(w.Seed, num), num: num, w: w, handle: handle, offline: offline,
		rng: rand.New(rand.NewPCG(w.Seed, uint64(num)))}
	key, err := MakeKey(w.Curve, w.Seed, num, 0)
	if err != nil {
		return nil, err
	}
	a.key = key
	if a.repo, err = a.newRepo(time.Time{}); err != nil {
		return nil, err
	}
	return a, nil
}

// newRepo makes an empty repository signed with a.key whose clock never
// reads earlier than floor (so a rebuilt repository's revs keep rising).
func (a *accountState) newRepo(floor time.Time) (*repo.Repo, error) {
	return repo.New(a.did, a.key, repo.Options{ClockID: uint(a.num), ForgetRecords: a.offline, Now: func() time.Time {
		if a.now.After(floor) {
			return a.now
		}
		return floor.Add(time.Microsecond)
	}})
}

func (a *accountState) identityEvent() Event {
	return Event{identity: &event.Identity{DID: []byte(a.did), Time: syntax.AppendDatetime(nil, a.now),
		Handle: []byte(a.handle)}}
}

func (a *accountState) accountEvent() Event {
	ev := &event.Account{DID: []byte(a.did), Time: syntax.AppendDatetime(nil, a.now), Active: a.status == StatusActive}
	if a.status != StatusActive {
		ev.Status = []byte(a.status)
	}
	return Event{account: ev}
}

func (a *accountState) syncEvent() (Event, error) {
	s, err := a.repo.SyncCommit()
	if err != nil {
		return Event{}, err
	}
	return Event{sync: s}, nil
}

// commit applies writes and remembers the commit for the replay faults.
func (a *accountState) commit(writes []repo.Write) (Event, error) {
	c, err := a.repo.Apply(writes)
	if err != nil {
		return Event{}, fmt.Errorf("fleet: %s: %w", a.did, err)
	}
	if !a.offline {
		a.lastCommits[0], a.lastCommits[1] = a.lastCommits[1], c
	}
	return Event{commit: c}, nil
}

// genesis is account creation in the reference PDS order: #identity,
// #account active, the empty first #commit (no since, no prevData), #sync.
func (a *accountState) genesis(now time.Time) ([]Event, error) {
	a.now = now
	c, err := a.commit(nil)
	if err != nil {
		return nil, err
	}
	s, err := a.syncEvent()
	if err != nil {
		return nil, err
	}
	return []Event{a.identityEvent(), a.accountEvent(), c, s}, nil
}

// preexist makes the repository's unseen first commit: records posts at
// at, no event returned (see Sim.Preexist).
func (a *accountState) preexist(at time.Time, records int) error {
	a.now = at
	ws := make([]repo.Write, records)
	for i := range ws {
		rkey := a.repo.NextTID()
		a.rkeys = append(a.rkeys, rkey)
		ws[i] = repo.Write{Action: mst.ActionCreate, Collection: postCollection, RKey: rkey, Record: repo.PostRecord(a.text(), at)}
	}
	_, err := a.commit(ws)
	return err
}

// step executes one planned action. A deactivated or deleted account
// comes back instead (#account active, #identity, #sync, the reference
// order): deleted accounts may return (spec §13.4), and with Zipf-skewed
// traffic a popular account that stayed deleted would silence a large
// share of the planned rate for the rest of a run.
func (a *accountState) step(kind ActionKind, now time.Time) ([]Event, error) {
	a.now = now
	switch a.status {
	case StatusDeactivated, StatusDeleted:
		a.status = StatusActive
		s, err := a.syncEvent()
		if err != nil {
			return nil, err
		}
		return []Event{a.accountEvent(), a.identityEvent(), s}, nil
	}
	switch kind {
	case ActHandle:
		a.handle = fmt.Sprintf("u%d-%d.test", a.num, a.rng.Uint32())
		return []Event{a.identityEvent()}, nil
	case ActDeactivate:
		a.status = StatusDeactivated
		return []Event{a.accountEvent()}, nil
	case ActDeleteAccount:
		a.status = StatusDeleted
		return []Event{a.accountEvent()}, nil
	case ActSync:
		s, err := a.syncEvent()
		if err != nil {
			return nil, err
		}
		return []Event{s}, nil
	}
	c, err := a.commit(a.writes())
	if err != nil {
		return nil, err
	}
	return []Event{c}, nil
}

// writes draws one commit's ops from the workload's op mix.
func (a *accountState) writes() []repo.Write {
	n := 1
	if a.w.MaxOpsPerCommit > 1 && a.rng.Float64() < a.w.MultiOpShare {
		n = 2 + a.rng.IntN(a.w.MaxOpsPerCommit-1)
	}
	ws := make([]repo.Write, 0, n)
	touched := map[string]bool{}
	total := a.w.CreateShare + a.w.UpdateShare + a.w.DeleteShare
	for range n {
		x := a.rng.Float64() * total
		act := mst.ActionCreate
		switch {
		case x < a.w.CreateShare:
		case x < a.w.CreateShare+a.w.UpdateShare:
			act = mst.ActionUpdate
		default:
			act = mst.ActionDelete
		}
		var rkey string
		if act != mst.ActionCreate && len(a.rkeys) > 0 {
			i := a.rng.IntN(len(a.rkeys))
			rkey = a.rkeys[i]
			if touched[rkey] {
				act, rkey = mst.ActionCreate, ""
			} else if act == mst.ActionDelete {
				a.rkeys[i] = a.rkeys[len(a.rkeys)-1]
				a.rkeys = a.rkeys[:len(a.rkeys)-1]
			}
		} else {
			act = mst.ActionCreate
		}
		if act == mst.ActionCreate {
			rkey = a.repo.NextTID()
			a.rkeys = append(a.rkeys, rkey)
		}
		touched[rkey] = true
		w := repo.Write{Action: act, Collection: postCollection, RKey: rkey}
		if act != mst.ActionDelete {
			w.Record = repo.PostRecord(a.text(), a.now)
		}
		ws = append(ws, w)
	}
	return ws
}

// text returns a post text of the workload's record size. Updates always
// change the text (a counter prefix), so an update is never a no-op.
func (a *accountState) text() string {
	const letters = "abcdefghijklmnopqrstuvwxyz     "
	n := a.w.RecordBytesMin + a.rng.IntN(a.w.RecordBytesMax-a.w.RecordBytesMin+1)
	b := make([]byte, 0, n+8)
	b = fmt.Appendf(b, "%x ", a.rng.Uint64())
	for len(b) < n {
		b = append(b, letters[a.rng.IntN(len(letters))])
	}
	return string(b)
}

// rotate gives the account a new signing key. The repository keeps its
// records but is rebuilt under the new key (repo.Repo has no key change),
// so the result is a #sync for a fresh commit of the same tree, signed
// with the new key.
func (a *accountState) rotate(now time.Time) (Event, error) {
	a.now = now
	a.keyGen++
	key, err := MakeKey(a.key.Curve(), a.w.Seed, a.num, a.keyGen)
	if err != nil {
		return Event{}, err
	}
	floor := now
	if v, err := syntax.DecodeTID([]byte(a.repo.Rev())); err == nil {
		floor = time.UnixMicro(int64(v >> 10))
	}
	old := a.repo
	a.key = key
	r, err := a.newRepo(floor)
	if err != nil {
		return Event{}, err
	}
	var batch []repo.Write
	for _, rk := range a.rkeys {
		_, rec := old.Get(postCollection, rk)
		batch = append(batch, repo.Write{Action: mst.ActionCreate, Collection: postCollection, RKey: rk, Record: rec})
		if len(batch) == event.DefaultMaxOps {
			if _, err := r.Apply(batch); err != nil {
				return Event{}, err
			}
			batch = batch[:0]
		}
	}
	if _, err := r.Apply(batch); err != nil {
		return Event{}, err
	}
	a.repo = r
	a.lastCommits = [2]*event.Commit{}
	return a.syncEvent()
}
