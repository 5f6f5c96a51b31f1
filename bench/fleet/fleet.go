package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/atrelay/relay/bench/plc"
	"github.com/atrelay/relay/bench/testca"
)

// Options configure a Fleet. Zero fields take the defaults.
type Options struct {
	// Workload is the traffic model; its Hosts and AccountsPerHost size
	// the fleet.
	Workload Workload
	// HistoryEvents bounds each host's in-memory event history, the window
	// cursors can replay (default 100,000 entries).
	HistoryEvents int
	// FirstSeq is the seq of each host's first event (default 1).
	FirstSeq int64
	// PLC is the directory accounts are registered in; nil starts a new
	// fake PLC on 127.0.0.1 that Close stops.
	PLC *plc.Server
	// HTTPClient sends requestCrawl; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// TLS, when set, makes every host serve https:// and wss:// with a
	// certificate from this CA, under the name pds-N.localhost:PORT (N
	// the host's index) that a relay's development switch dials on
	// loopback; DID documents then carry https:// endpoints. Nil: plain
	// http:// and ws:// as localhost:PORT.
	TLS *testca.CA
}

// Account is one live account of the fleet. It is safe for concurrent
// use: mu is held across an action's signing and publishing so the
// account's events keep their order on its host.
type Account struct {
	// DID is static.
	DID string

	mu   sync.Mutex    // guards st and home
	st   *accountState //
	home *Host         //
}

// Fleet is N simulated PDS hosts, their accounts and a fake PLC directory
// in one process. It is safe for concurrent use.
type Fleet struct {
	// Static after New.
	opts    Options
	hosts   []*Host
	plc     *plc.Server
	ownPLC  bool
	client  *http.Client
	planner *Planner // guarded by driveMu

	driveMu sync.Mutex // serializes Step and Run
	wg      sync.WaitGroup

	mu struct {
		sync.Mutex
		accounts map[string]*Account
		next     int // next account number
		closed   bool
	}
}

// New starts the fleet: one listener per host, K accounts per host with
// keys, repositories and PLC documents, each created with the reference
// event order (#identity, #account, empty #commit, #sync) at seqs 1.. on
// its host. Account creation is spread over all cores.
func New(opts Options) (*Fleet, error) {
	w := opts.Workload.WithDefaults()
	if err := w.Validate(); err != nil {
		return nil, err
	}
	opts.Workload = w
	if opts.HistoryEvents <= 0 {
		opts.HistoryEvents = 100_000
	}
	if opts.FirstSeq <= 0 {
		opts.FirstSeq = 1
	}
	f := &Fleet{opts: opts, plc: opts.PLC, client: opts.HTTPClient}
	f.mu.accounts = map[string]*Account{}
	if f.client == nil {
		f.client = &http.Client{Timeout: 10 * time.Second}
	}
	var err error
	if f.planner, err = NewPlanner(w); err != nil {
		return nil, err
	}
	if f.plc == nil {
		f.plc, f.ownPLC = plc.New(), true
		if err := f.plc.Start(""); err != nil {
			return nil, err
		}
	}
	for i := range w.Hosts {
		h, err := newHost(f, i)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.hosts = append(f.hosts, h)
	}
	if err := f.createAccounts(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// createAccounts makes every host's initial accounts in parallel: key
// derivation and the genesis signature dominate.
func (f *Fleet) createAccounts() error {
	w := &f.opts.Workload
	total := w.Hosts * w.AccountsPerHost
	f.mu.next = total
	errs := make([]error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for wk := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each worker owns whole hosts, so a host's accounts are
			// created (and sequenced) in account order.
			for hi := wk; hi < w.Hosts; hi += len(errs) {
				for k := range w.AccountsPerHost {
					if _, err := f.create(f.hosts[hi], hi*w.AccountsPerHost+k); err != nil {
						errs[wk] = err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// create makes account number num on h and publishes its genesis events.
func (f *Fleet) create(h *Host, num int) (*Account, error) {
	st, err := newAccountState(&f.opts.Workload, num, fmt.Sprintf("u%d.test", num), false)
	if err != nil {
		return nil, err
	}
	a := &Account{DID: st.did, st: st, home: h}
	if err := f.plc.Put(st.did, f.doc(st, h)); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	evs, err := st.genesis(time.Now())
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.mu.accounts[a.DID] = a
	f.mu.Unlock()
	h.attach(a)
	return a, a.publishLocked(evs)
}

// doc is the PLC document of an account homed on h.
func (f *Fleet) doc(st *accountState, h *Host) plc.Doc {
	return plc.Doc{Handle: st.handle, PDS: h.URL(), Key: st.key.Public().Multibase(), KeyType: plc.KeyTypeMultikey}
}

// publishLocked sequences evs on the account's home host.
// REQUIRES: a.mu held.
func (a *Account) publishLocked(evs []Event) error {
	for _, ev := range evs {
		if _, err := a.home.publish(0, ev.AppendFrame); err != nil {
			return err
		}
	}
	return nil
}

// Hosts returns the fleet's hosts in index order.
func (f *Fleet) Hosts() []*Host { return f.hosts }

// Hostnames returns every host's name (localhost:PORT, or
// pds-N.localhost:PORT with Options.TLS) in index order.
func (f *Fleet) Hostnames() []string {
	out := make([]string, len(f.hosts))
	for i, h := range f.hosts {
		out[i] = h.Name
	}
	return out
}

// PLC returns the fake directory the accounts are registered in.
func (f *Fleet) PLC() *plc.Server { return f.plc }

// PLCURL is the base URL DIDs resolve against.
func (f *Fleet) PLCURL() string { return f.plc.URL() }

// Workload returns the workload in use (defaults applied).
func (f *Fleet) Workload() Workload { return f.opts.Workload }

// account returns the live account for did, or nil.
func (f *Fleet) account(did string) *Account {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.accounts[did]
}

// Step plans and executes one action now, without pacing. It returns the
// action; a planned action on a host without accounts does nothing.
func (f *Fleet) Step() (Action, error) {
	f.driveMu.Lock()
	act := f.planner.Next()
	f.driveMu.Unlock()
	return act, f.execute(act, time.Now())
}

func (f *Fleet) execute(act Action, now time.Time) error {
	h := f.hosts[act.Host]
	a := h.accountAt(act.Rank)
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.home != h { // migrated between the pick and the lock
		return nil
	}
	handle := a.st.handle
	evs, err := a.st.step(act.Kind, now)
	if err != nil {
		return err
	}
	if a.st.handle != handle {
		if err := f.plc.Put(a.DID, f.doc(a.st, h)); err != nil {
			return err
		}
	}
	return a.publishLocked(evs)
}

// Run executes n actions (n ≤ 0: until ctx ends) paced at the workload's
// EventsPerSecond in real time, signing inline on workers goroutines
// (default GOMAXPROCS). Actions of one account stay in order; the rate is
// a ceiling when signing cannot keep up.
func (f *Fleet) Run(ctx context.Context, n int, workers int) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	f.driveMu.Lock()
	defer f.driveMu.Unlock()
	step := time.Duration(float64(time.Second) / f.opts.Workload.EventsPerSecond)
	acts := make(chan Action, 256)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for act := range acts {
				if err := f.execute(act, time.Now()); err != nil && !errors.Is(err, ErrClosed) {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	start := time.Now()
	var err error
	for i := 0; n <= 0 || i < n; i++ {
		if d := time.Until(start.Add(time.Duration(i) * step)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		if ctx.Err() != nil {
			break
		}
		act := f.planner.Next()
		select {
		case acts <- act:
		case <-ctx.Done():
		}
	}
	close(acts)
	wg.Wait()
	select {
	case err = <-errs:
	default:
	}
	return err
}

// Close stops every host and, if the fleet started it, the PLC.
func (f *Fleet) Close() error {
	f.mu.Lock()
	closed := f.mu.closed
	f.mu.closed = true
	f.mu.Unlock()
	if closed {
		return nil
	}
	var wg sync.WaitGroup
	for _, h := range f.hosts {
		wg.Add(1)
		go func() { defer wg.Done(); h.close() }()
	}
	wg.Wait()
	f.wg.Wait()
	if f.ownPLC {
		return f.plc.Close()
	}
	return nil
}
