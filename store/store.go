package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Store is the relay's Pebble-backed state. See the package doc for the
// layout, the invariants and which methods may run concurrently (all).
type Store struct {
	// Static after Open.
	opts Options
	db   *pebble.DB
	sync *pebble.WriteOptions

	// Lock-free views for readers.
	newest    atomic.Uint64 // last durable seq; written by the writer after commit
	oldest    atomic.Uint64 // first possibly retained seq; written by Open and retention
	hiddenN   atomic.Int64  // len(mu.hidden), so replay skips the map when empty
	closed    atomic.Bool
	stalls    atomic.Int64               // Pebble write stalls begun
	stallNs   atomic.Int64               // total stalled nanoseconds
	stallFrom atomic.Int64               // UnixNano of the current stall's start, 0 when none
	retained  atomic.Int64               // events deleted by retention
	fatal     atomic.Pointer[fatalError] // set when Pebble reports a fatal error

	// w is the writer state; every mutation holds w.Mutex.
	w writer

	// mu guards the in-memory copies of the small tables. Writers update
	// them after their batch commits, under mu.Lock.
	mu struct {
		sync.RWMutex
		hosts  map[HostID]Host
		byName map[string]HostID
		// topHost is the highest id in hosts. Ids are handed out in
		// order and hosts are never deleted, so ListHosts walks ids up
		// from its cursor instead of sorting every host per page.
		topHost HostID
		bans    map[string]struct{}
		hidden  map[string]Seq // DID → events at or below this seq are hidden
	}

	// retMu serializes retention passes (the goroutine and RunRetention).
	retMu sync.Mutex

	stop chan struct{} // closed by Close to end the retention goroutine
	done chan struct{} // closed by the retention goroutine on exit
}

// writer is the state of the single writer. All fields are guarded by the
// embedded Mutex.
type writer struct {
	sync.Mutex
	failed      error // sticky: a commit failed, so memory may disagree with disk
	batch       *pebble.Batch
	lastSeq     Seq
	lastUID     uint64
	lastHID     HostID
	lastMilli   int64 // newest commit time, so stored times never go backwards
	lastTimeSec int64 // newest time-index second
	key, val    []byte
	pend        pendingSet
	hostIdx     map[HostID]int // staged host → index in hostStage
	hostStage   []Host
	staged      Staged // the group commit between Stage and Commit
}

// Open opens or creates the database in dir and starts its retention
// goroutine. Close releases both.
func Open(dir string, o Options) (*Store, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	s := &Store{opts: o, stop: make(chan struct{}), done: make(chan struct{})}
	s.sync = pebble.Sync
	if o.Sync == NoSync {
		s.sync = pebble.NoSync
	}
	listener := &pebble.EventListener{
		WriteStallBegin: func(pebble.WriteStallBeginInfo) {
			s.stalls.Add(1)
			s.stallFrom.Store(time.Now().UnixNano())
		},
		WriteStallEnd: func() {
			if from := s.stallFrom.Swap(0); from != 0 {
				s.stallNs.Add(time.Now().UnixNano() - from)
			}
		},
	}
	cache := pebble.NewCache(o.BlockCacheBytes)
	po := o.pebbleOptions(cache, listener)
	po.Logger = &fatalLogger{s: s, inner: o.Logger}
	db, err := pebble.Open(dir, po)
	cache.Unref() // the DB holds its own reference
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	s.db = db
	s.w.batch = db.NewBatch()
	s.w.pend.init()
	s.w.hostIdx = make(map[HostID]int)
	s.mu.hosts = make(map[HostID]Host)
	s.mu.byName = make(map[string]HostID)
	s.mu.bans = make(map[string]struct{})
	s.mu.hidden = make(map[string]Seq)
	if err := s.load(); err != nil {
		s.w.batch.Close()
		db.Close()
		return nil, err
	}
	go s.retentionLoop()
	return s, nil
}

// load checks the schema, creates the meta keys of a fresh database and
// reads the small tables into memory.
func (s *Store) load() error {
	v, err := s.getU64(keySchema, 4)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		b := s.db.NewBatch()
		defer b.Close()
		_ = b.Set(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion), nil)
		_ = b.Set(keyLastSeq, binary.BigEndian.AppendUint64(nil, uint64(s.opts.InitialSeq-1)), nil)
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("store: initialize: %w", err)
		}
	case err != nil:
		return err
	case v > SchemaVersion:
		return fmt.Errorf("%w: on disk %d, binary %d", ErrSchema, v, SchemaVersion)
	case v == 0:
		return fmt.Errorf("%w: schema version 0", ErrCorrupt)
	}
	last, err := s.getU64(keyLastSeq, 8)
	if err != nil {
		return fmt.Errorf("store: last seq: %w", err)
	}
	s.w.lastSeq = Seq(last)
	if s.w.lastUID, err = s.getU64Opt(keyLastUID, 8); err != nil {
		return err
	}
	hid, err := s.getU64Opt(keyLastHID, 4)
	if err != nil {
		return err
	}
	s.w.lastHID = HostID(hid)
	if err := s.loadTables(); err != nil {
		return err
	}
	return s.loadLogBounds()
}

// loadTables reads hosts, bans and hidden accounts into memory.
func (s *Store) loadTables() error {
	err := s.scanPrefix(prefixHost, func(k, v []byte) error {
		if len(k) != 5 {
			return fmt.Errorf("%w: host key %x", ErrCorrupt, k)
		}
		id := HostID(binary.BigEndian.Uint32(k[1:]))
		h, err := decodeHost(id, v)
		if err != nil {
			return err
		}
		s.mu.hosts[id] = h
		s.mu.byName[h.Hostname] = id
		s.mu.topHost = max(s.mu.topHost, id)
		return nil
	})
	if err != nil {
		return err
	}
	err = s.scanPrefix(prefixBan, func(k, _ []byte) error {
		s.mu.bans[string(k[1:])] = struct{}{}
		return nil
	})
	if err != nil {
		return err
	}
	err = s.scanPrefix(prefixHidden, func(k, v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("%w: hidden value %x", ErrCorrupt, v)
		}
		s.mu.hidden[string(k[1:])] = Seq(binary.BigEndian.Uint64(v))
		return nil
	})
	s.hiddenN.Store(int64(len(s.mu.hidden)))
	return err
}

// loadLogBounds finds the oldest retained event and the newest time-index
// entry, and checks the log does not run past meta 's'.
func (s *Store) loadLogBounds() error {
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixEvent}, UpperBound: []byte{prefixEvent + 1},
	})
	if err != nil {
		return err
	}
	oldest := s.w.lastSeq + 1
	if it.First() {
		first, err := parseU64Key(it.Key(), prefixEvent)
		if err != nil {
			it.Close()
			return err
		}
		oldest = Seq(first)
		it.Last()
		last, err := parseU64Key(it.Key(), prefixEvent)
		if err != nil {
			it.Close()
			return err
		}
		if Seq(last) > s.w.lastSeq {
			it.Close()
			return fmt.Errorf("%w: event %d beyond last seq %d", ErrCorrupt, last, s.w.lastSeq)
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	s.oldest.Store(uint64(oldest))
	s.newest.Store(uint64(s.w.lastSeq))

	it, err = s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixTime}, UpperBound: []byte{prefixTime + 1},
	})
	if err != nil {
		return err
	}
	if it.Last() {
		sec, err := parseU64Key(it.Key(), prefixTime)
		if err != nil {
			it.Close()
			return err
		}
		s.w.lastTimeSec = int64(sec)
		s.w.lastMilli = int64(sec) * 1000
	}
	return it.Close()
}

func (s *Store) scanPrefix(prefix byte, fn func(k, v []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefix}, UpperBound: []byte{prefix + 1},
	})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		if err := fn(it.Key(), v); err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}

// getU64 reads a fixed-width big-endian meta value of width bytes.
func (s *Store) getU64(key []byte, width int) (uint64, error) {
	v, closer, err := s.db.Get(key)
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	switch {
	case len(v) == 4 && width == 4:
		return uint64(binary.BigEndian.Uint32(v)), nil
	case len(v) == 8 && width == 8:
		return binary.BigEndian.Uint64(v), nil
	}
	return 0, fmt.Errorf("%w: meta %x has %d bytes", ErrCorrupt, key, len(v))
}

// getU64Opt is getU64 with a missing key read as zero.
func (s *Store) getU64Opt(key []byte, width int) (uint64, error) {
	v, err := s.getU64(key, width)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	return v, err
}

// Close stops retention and closes the database. Iterators must be closed
// first. Close is idempotent; later calls of other methods fail with
// ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.stop)
	<-s.done
	s.retMu.Lock()
	defer s.retMu.Unlock()
	s.w.Lock()
	defer s.w.Unlock()
	s.w.batch.Close()
	return s.db.Close()
}

// commitLocked commits b with the store's sync policy, marking the writer
// failed on error. Pebble reports a failed WAL write or sync through its
// logger's Fatalf rather than from Commit, so a fatal report during the
// commit fails it too. REQUIRES: s.w held.
func (s *Store) commitLocked(b *pebble.Batch) error {
	err := b.Commit(s.sync)
	if f := s.fatal.Load(); f != nil && err == nil {
		err = f
	}
	if err != nil {
		s.w.failed = err
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// fatalError is an error Pebble reported through Logger.Fatalf. It wraps
// the error argument of the report when there is one.
type fatalError struct {
	msg string
	err error
}

func (e *fatalError) Error() string { return "pebble fatal: " + e.msg }
func (e *fatalError) Unwrap() error { return e.err }

// fatalLogger turns Pebble's Fatalf, which would exit the process, into a
// sticky store failure that every later write reports, so the caller
// decides how to stop. Pebble's own state after such a report is not
// trusted: the store refuses all further writes until reopened.
type fatalLogger struct {
	s     *Store        // static
	inner pebble.Logger // static; nil means discard
}

func (l *fatalLogger) Infof(format string, args ...interface{}) {
	if l.inner != nil {
		l.inner.Infof(format, args...)
	}
}

func (l *fatalLogger) Errorf(format string, args ...interface{}) {
	if l.inner != nil {
		l.inner.Errorf(format, args...)
	}
}

func (l *fatalLogger) Fatalf(format string, args ...interface{}) {
	f := &fatalError{msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if err, ok := a.(error); ok {
			f.err = err
			break
		}
	}
	l.s.fatal.CompareAndSwap(nil, f)
	if l.inner != nil {
		l.inner.Errorf(format, args...)
	}
}

// checkWritableLocked returns why no write may start. REQUIRES: s.w held.
func (s *Store) checkWritableLocked() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.w.failed != nil {
		return fmt.Errorf("%w: %w", ErrFailed, s.w.failed)
	}
	if f := s.fatal.Load(); f != nil {
		s.w.failed = f
		return fmt.Errorf("%w: %w", ErrFailed, f)
	}
	return nil
}

// pendingSet holds the accounts one staged batch has touched, so that two
// updates to one DID in one batch see each other. It reuses its entries and
// their byte buffers across batches. Owned by the writer.
type pendingSet struct {
	seed  maphash.Seed
	idx   map[uint64]int32 // hash of DID → newest entry with that hash
	items []pendingAccount
	n     int
}

type pendingAccount struct {
	acct   Account
	exists bool  // the account was on disk before this batch
	isNew  bool  // created in this batch: write its uid index too
	next   int32 // previous entry with the same DID hash, or -1
}

func (p *pendingSet) init() {
	p.seed = maphash.MakeSeed()
	p.idx = make(map[uint64]int32)
}

func (p *pendingSet) reset() {
	clear(p.idx)
	p.n = 0
}

func (p *pendingSet) find(did []byte) int {
	i, ok := p.idx[maphash.Bytes(p.seed, did)]
	for ok && i >= 0 {
		if string(p.items[i].acct.DID) == string(did) {
			return int(i)
		}
		i = p.items[i].next
	}
	return -1
}

func (p *pendingSet) add(did []byte) int {
	h := maphash.Bytes(p.seed, did)
	if p.n == len(p.items) {
		p.items = append(p.items, pendingAccount{})
	}
	e := &p.items[p.n]
	e.acct.DID = append(e.acct.DID[:0], did...)
	e.exists, e.isNew = false, false
	e.next = -1
	if prev, ok := p.idx[h]; ok {
		e.next = prev
	}
	p.idx[h] = int32(p.n)
	p.n++
	return p.n - 1
}
