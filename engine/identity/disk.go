package identity

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/store"
)

// Pacing of the disk tier's two goroutines.
const (
	// diskFlushEvery is how often the writer commits the rows resolved
	// since its last commit; diskFlushRows rows commit at once. A crash
	// loses at most these rows (they are resolved again).
	diskFlushEvery = 250 * time.Millisecond
	diskFlushRows  = 1024
	// diskMaxPending bounds the rows waiting for a commit (about 150
	// bytes each): when the store cannot keep up, new rows are dropped
	// (counted) rather than held.
	diskMaxPending = 64 << 10
	// diskSweepEvery and diskSweepRows pace the sweep: 4,096 rows a
	// second reads 10 million rows in 41 minutes for well under 1% of a
	// core; over DiskMaxRows it goes 8 times faster.
	diskSweepEvery = time.Second
	diskSweepRows  = 4096
)

// staleServe is how long (seconds) an identity read from a stale row is
// served from memory while its re-resolution runs; the resolution replaces
// it when it finishes.
const staleServe = 10

// disk is the identity tier in the store. Rows are written by one
// goroutine in NoSync batches; deletes (Purge) are committed before they
// return, so a row purged for an #identity event is gone from the WAL
// ahead of the event that caused it. A sweep goroutine walks the rows in
// DID order, deleting those past DiskMaxAge, and past DiskMaxRows those
// past TTL. Safe for concurrent use.
type disk struct {
	// Static after newDisk.
	st      *store.Store
	maxAge  int64 // seconds
	ttl     int64 // seconds
	maxRows int64
	now     func() int64 // Unix seconds, the resolver's clock

	// commitMu orders commits: the writer holds it from taking the
	// pending rows until their batch is committed, del while it drops a
	// pending row and commits the delete. So a row written before a
	// delete never lands after it.
	commitMu sync.Mutex
	batch    *store.IdentityBatch // guarded by commitMu

	mu struct {
		sync.Mutex
		pending  map[string]store.IdentityRecord // DID → newest row not yet taken by the writer
		flushing map[string]store.IdentityRecord // rows being committed, readable meanwhile
	}

	// rows estimates the rows on disk: set by each complete sweep to what
	// it kept, plus every row written since (re-writes count again, so it
	// errs high until the next sweep ends). Before the first sweep ends it
	// counts only what this process wrote.
	rows atomic.Int64

	kick chan struct{} // wakes the writer early; buffered 1
	stop chan struct{} // closed by close
	wg   sync.WaitGroup

	hits, stale, writes, dropped, errs, swept *metrics.Counter
}

func newDisk(cfg *Config, now func() int64) *disk {
	d := &disk{
		st:      cfg.Store,
		maxAge:  int64(cfg.DiskMaxAge / time.Second),
		ttl:     int64(max(cfg.TTL/time.Second, 1)),
		maxRows: cfg.DiskMaxRows,
		now:     now,
		batch:   cfg.Store.NewIdentityBatch(),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	d.mu.pending = make(map[string]store.IdentityRecord)
	s := cfg.Metrics
	d.hits = s.NewCounter("relay_identity_disk_hits_total")
	d.stale = s.NewCounter("relay_identity_disk_stale_hits_total")
	d.writes = s.NewCounter("relay_identity_disk_writes_total")
	d.dropped = s.NewCounter("relay_identity_disk_dropped_total")
	d.errs = s.NewCounter("relay_identity_disk_errors_total")
	d.swept = s.NewCounter("relay_identity_disk_swept_total")
	s.NewGauge("relay_identity_disk_rows", func() float64 { return float64(d.rows.Load()) })
	return d
}

// start runs the writer and the sweep until close.
func (d *disk) start() {
	d.wg.Add(2)
	go d.writer()
	go d.sweeper()
}

// close stops both goroutines and commits what is pending. The resolver
// calls it after its last resolution finished, before the store closes.
func (d *disk) close() {
	close(d.stop)
	d.wg.Wait()
	d.flush()
	d.commitMu.Lock()
	d.batch.Close()
	d.commitMu.Unlock()
}

// put queues did's freshly resolved identity for the writer. It never
// waits for the store.
func (d *disk) put(did string, id *Identity, resolvedAt int64) {
	var rec store.IdentityRecord
	if !recordOf(id, resolvedAt, &rec) {
		return
	}
	d.mu.Lock()
	_, replaces := d.mu.pending[did]
	if !replaces && (len(d.mu.pending) >= diskMaxPending || d.rows.Load()+int64(len(d.mu.pending)) >= d.maxRows) {
		d.mu.Unlock()
		d.dropped.Inc()
		return
	}
	d.mu.pending[did] = rec
	n := len(d.mu.pending)
	d.mu.Unlock()
	if n >= diskFlushRows {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
}

// get reads did's row: the newest pending one, else the one on disk.
// found is false on a miss or a row that does not decode (deleted here).
func (d *disk) get(did string, dst *store.IdentityRecord) bool {
	d.mu.Lock()
	rec, ok := d.mu.pending[did]
	if !ok {
		rec, ok = d.mu.flushing[did]
	}
	d.mu.Unlock()
	if ok {
		*dst = rec
		return true
	}
	found, err := d.st.GetIdentity([]byte(did), dst)
	if errors.Is(err, store.ErrCorrupt) {
		d.errs.Inc()
		d.del(did)
		return false
	}
	if err != nil {
		d.errs.Inc()
		return false
	}
	return found
}

// del removes did's row, pending or on disk, before it returns: the
// delete is in the WAL ahead of any batch committed afterwards.
func (d *disk) del(did string) {
	d.commitMu.Lock()
	defer d.commitMu.Unlock()
	d.mu.Lock()
	delete(d.mu.pending, did)
	d.mu.Unlock()
	if err := d.st.DeleteIdentity([]byte(did)); err != nil {
		d.errs.Inc()
	}
}

// writer commits pending rows every diskFlushEvery, or sooner when
// diskFlushRows are waiting.
func (d *disk) writer() {
	defer d.wg.Done()
	t := time.NewTicker(diskFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		case <-d.kick:
		}
		d.flush()
	}
}

// flush commits the pending rows in one batch. The rows stay readable (as
// flushing) until the commit returns.
func (d *disk) flush() {
	d.commitMu.Lock()
	defer d.commitMu.Unlock()
	d.mu.Lock()
	rows := d.mu.pending
	if len(rows) == 0 {
		d.mu.Unlock()
		return
	}
	d.mu.flushing = rows
	d.mu.pending = make(map[string]store.IdentityRecord, len(rows))
	d.mu.Unlock()
	for did, rec := range rows {
		if err := d.batch.Set([]byte(did), &rec); err != nil {
			d.errs.Inc()
		}
	}
	n := d.batch.Len()
	if err := d.batch.Commit(); err != nil {
		d.errs.Inc()
	} else {
		d.writes.Add(n)
		d.rows.Add(int64(n))
	}
	d.mu.Lock()
	d.mu.flushing = nil
	d.mu.Unlock()
}

// sweeper runs sweepStep every diskSweepEvery.
func (d *disk) sweeper() {
	defer d.wg.Done()
	t := time.NewTicker(diskSweepEvery)
	defer t.Stop()
	var sw sweep
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		n := diskSweepRows
		if d.rows.Load() > d.maxRows {
			n *= 8
		}
		d.sweepStep(&sw, n)
	}
}

// sweep is the sweeper's position in one pass over the rows. Owned by the
// sweeping goroutine.
type sweep struct {
	after  []byte // last DID visited; nil at the start of a pass
	kept   int64  // rows kept so far in this pass
	writes int64  // d.writes when the pass began
}

// sweepStep visits up to n rows: deletes those that do not decode, are
// older than maxAge, or (while the estimate is over maxRows) older than
// TTL; at the end of a pass it resets the row estimate.
func (d *disk) sweepStep(sw *sweep, n int) {
	if sw.after == nil {
		sw.kept, sw.writes = 0, int64(d.writes.Get())
	}
	now := d.now()
	over := d.rows.Load() > d.maxRows
	var doomed [][]byte
	last, err := d.st.ScanIdentities(sw.after, n, func(did []byte, rec *store.IdentityRecord, err error) {
		age := now - rec.ResolvedAt
		if err != nil || age >= d.maxAge || (over && age >= d.ttl) {
			doomed = append(doomed, append([]byte(nil), did...))
			return
		}
		sw.kept++
	})
	if err != nil {
		d.errs.Inc()
		return
	}
	if len(doomed) > 0 {
		// Under commitMu, so a row re-written since the scan read it is
		// deleted before or after that write commits, never in between:
		// either way it is absent or the new row, never a torn mix.
		d.commitMu.Lock()
		b := d.batch
		for _, did := range doomed {
			_ = b.Delete(did)
		}
		if err := b.Commit(); err != nil {
			d.errs.Inc()
		} else {
			d.swept.Add(len(doomed))
			d.rows.Add(-int64(len(doomed)))
		}
		d.commitMu.Unlock()
	}
	sw.after = last
	if last == nil {
		d.rows.Store(sw.kept + int64(d.writes.Get()) - sw.writes)
	}
}

// recordOf converts a resolved identity into a row; false if it cannot be
// stored (it is then only cached in memory).
func recordOf(id *Identity, resolvedAt int64, rec *store.IdentityRecord) bool {
	switch id.Key.Curve() {
	case atcrypto.P256:
		rec.KeyType = store.KeyP256
	case atcrypto.K256:
		rec.KeyType = store.KeyK256
	default:
		return false
	}
	if id.PDSHost == "" || len(id.PDSHost) > store.MaxHostnameBytes || len(id.Handle) > store.MaxHandleBytes {
		return false
	}
	rec.ResolvedAt = resolvedAt
	rec.Key = id.Key.Compressed()
	rec.PDSHost = []byte(id.PDSHost)
	rec.Handle = []byte(id.Handle)
	return true
}

// identityOf converts a row back; the key is validated as a fetched
// document's would be. false if the row is unusable.
func identityOf(did string, rec *store.IdentityRecord) (Identity, bool) {
	var c atcrypto.Curve
	switch rec.KeyType {
	case store.KeyP256:
		c = atcrypto.P256
	case store.KeyK256:
		c = atcrypto.K256
	default:
		return Identity{}, false
	}
	k, err := atcrypto.PublicKeyFromCompressed(c, rec.Key[:])
	if err != nil {
		return Identity{}, false
	}
	return Identity{DID: did, Key: k, PDSHost: string(rec.PDSHost), Handle: string(rec.Handle)}, true
}
