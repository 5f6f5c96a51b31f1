// Package generate writes synthetic firehose captures offline: it runs a
// bench/fleet Workload through simulated accounts (fleet.Sim: real keys,
// internal/repo repositories, sync-1.1 commits), signs everything ahead of
// time on all cores and stores the frames in bench/capture's format, so a
// load test spends its CPU on the relay rather than on signatures. The
// result replays through bench/replay unchanged.
//
// # What a generated capture holds
//
//   - one source per host, named localhost:<BasePort+i> (replay rewrites the
//     DID documents to the ports it really listens on);
//   - every account's creation (#identity, #account, empty #commit, #sync),
//     then Options.Actions planned actions (fleet.Planner) at the
//     workload's rate;
//   - per-host seqs from 1 without gaps, and receive times equal to the
//     planned times (the rate of Workload.EventsPerSecond), so
//     replay.Scaled paces them as planned;
//   - the DID document of every account (its final handle, a Multikey key)
//     as the identity snapshot, rendered by bench/plc.
//
// When Workload.Start is zero the plan is placed so its last action is at
// the time of generation, keeping every rev inside a relay's future-rev
// window when the capture is replayed soon after.
//
// # Pre-existing accounts
//
// With Options.Population.Accounts set, the capture models a relay joining
// a network that already exists, instead of creating every account in it:
//
//   - Population.Accounts accounts exist before the capture; the snapshot
//     holds every one's DID document, and none is created in the capture;
//   - account n lives on one host for the whole capture, drawn from the
//     workload's HostSkew power law by a hash of (Seed, n), so hosts differ
//     in size as real PDSes do;
//   - each action picks its account from a power law of exponent
//     Population.Skew over all accounts (default 0.7: with 3.6 actions per
//     account, 84 % of the accounts act at least once), and the planner
//     decides only its kind;
//   - an account is materialised at its first action: a repository of
//     Population.InitialRecords posts committed an hour before Start, whose
//     events are not in the capture (fleet.Sim.Preexist), so its first event
//     has a since and prevData the relay cannot check, as when a relay
//     starts on the real network;
//   - receive times are spaced per event, not per action, at
//     Workload.EventsPerSecond, so a replay at speed 1 runs at that rate.
//
// Memory is the touched accounts (about 3 KiB each with a few records; an
// untouched account costs 8 bytes) and, at the end, one worker's documents
// at a time: the snapshot is rendered account by account, each Sim dropped
// once its document is made.
//
// # Parallelism
//
// Actions are processed in batches. Within a batch, each worker executes
// the actions of the accounts it owns (account number mod workers) in plan
// order; the results are then sequenced and written in plan order by one
// goroutine. Account state never crosses workers, and the plan and every
// account's random source are seeded, so the frames do not depend on the
// number of workers (P-256 signatures are randomized, everything else is
// reproducible).
package generate

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atrelay/relay/bench/capture"
	"github.com/atrelay/relay/bench/fleet"
	"github.com/atrelay/relay/bench/plc"
)

// BasePort is the port of host 0's name in a generated capture.
const BasePort = 10000

// batchActions is how many planned actions are signed between two writes:
// big enough to keep every worker busy, small enough to bound memory.
const batchActions = 4096

// ErrBadOptions: Options are out of range; the error names the field.
var ErrBadOptions = errors.New("generate: bad options")

// Options configure Generate. Zero fields take the defaults.
type Options struct {
	// Workload is the traffic model (fleet defaults apply). Hosts must be
	// at most 65535-BasePort.
	Workload fleet.Workload
	// Actions is the number of planned actions after account creation
	// (default 10,000).
	Actions int
	// Population, when its Accounts is set, replaces account creation by
	// accounts that exist before the capture (see the package doc);
	// Workload.AccountsPerHost and AccountSkew are then unused.
	Population Population
	// Workers is the number of signing goroutines (default GOMAXPROCS).
	Workers int
	// Note is stored in the capture header.
	Note string
}

// Stats summarize a generation.
type Stats struct {
	Frames   int64 // frames written
	Bytes    int64 // frame bytes written
	Accounts int   // accounts in the snapshot
	// Touched is the number of accounts with at least one event.
	Touched int
	Elapsed time.Duration
}

// FramesPerSecond is the generation rate.
func (s Stats) FramesPerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Frames) / s.Elapsed.Seconds()
}

// job is one unit of work for a worker: an account's genesis (kind 0) or
// a planned action.
type job struct {
	acct int              // index in gen.sims
	kind fleet.ActionKind // 0: genesis
	host int
	at   time.Time
	evs  []fleet.Event // filled by the worker
	err  error
}

// Generate writes a capture of opts' workload to w.
func Generate(w io.Writer, opts Options) (Stats, error) {
	began := time.Now()
	if opts.Actions <= 0 {
		opts.Actions = 10_000
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	pop := opts.Population.withDefaults()
	zeroStart := opts.Workload.Start.IsZero()
	wl := opts.Workload.WithDefaults()
	if zeroStart {
		span := time.Duration(float64(opts.Actions) / wl.EventsPerSecond * float64(time.Second))
		wl.Start = time.Now().UTC().Add(-span)
	}
	if err := wl.Validate(); err != nil {
		return Stats{}, err
	}
	if wl.Hosts > 65535-BasePort {
		return Stats{}, fmt.Errorf("%w: %d hosts > %d", ErrBadOptions, wl.Hosts, 65535-BasePort)
	}
	if err := pop.validate(); err != nil {
		return Stats{}, err
	}
	planner, err := fleet.NewPlanner(wl)
	if err != nil {
		return Stats{}, err
	}
	hdr := capture.Header{Created: wl.Start, Note: opts.Note}
	for i := range wl.Hosts {
		name := fmt.Sprintf("localhost:%d", BasePort+i)
		hdr.Sources = append(hdr.Sources, capture.Source{
			URL: "ws://" + name + "/xrpc/com.atproto.sync.subscribeRepos", Hostname: name, Frames: capture.CountUnknown})
	}
	cw, err := capture.NewWriter(w, hdr)
	if err != nil {
		return Stats{}, err
	}
	g := &gen{opts: opts, wl: &wl, w: cw, seqs: make([]int64, wl.Hosts)}
	if pop.Accounts > 0 {
		err = g.population(planner, pop)
	} else {
		err = g.creation(planner)
	}
	if err != nil {
		return Stats{}, err
	}
	snap, err := g.snapshot()
	if err != nil {
		return Stats{}, err
	}
	cw.SetSnapshot(snap)
	if err := cw.Close(); err != nil {
		return Stats{}, err
	}
	g.stats.Accounts = len(g.sims)
	g.stats.Elapsed = time.Since(began)
	return g.stats, nil
}

// gen is one generation's writer side. Single goroutine except run's
// workers, which touch only their own jobs and the sims of their accounts.
type gen struct {
	opts Options
	wl   *fleet.Workload // defaults applied; read-only
	w    *capture.Writer
	// sims holds every account's Sim by account number; in the population
	// model nil until the account's first action.
	sims   []*fleet.Sim
	hostOf func(acct int) int
	// eventStep, when set, spaces receive times per event from start
	// instead of stamping each event with its action's time.
	eventStep time.Duration
	start     time.Time
	seqs      []int64 // last seq per host
	buf       []byte
	stats     Stats
}

// creation is the account-creation model: every account's genesis at
// Start, then the planned actions on Zipf-ranked accounts of each host.
func (g *gen) creation(planner *fleet.Planner) error {
	k := g.wl.AccountsPerHost
	g.sims = make([]*fleet.Sim, g.wl.Hosts*k)
	g.hostOf = func(acct int) int { return acct / max(k, 1) }
	jobs := make([]job, len(g.sims))
	for i := range jobs {
		jobs[i] = job{acct: i, host: g.hostOf(i), at: g.wl.Start}
	}
	err := g.run(jobs, func(j *job) {
		s, err := fleet.NewSim(g.wl, j.acct)
		if err != nil {
			j.err = err
			return
		}
		g.sims[j.acct] = s
		j.evs, j.err = s.Genesis(j.at)
	})
	if err != nil || len(g.sims) == 0 {
		return err
	}
	return g.actions(planner, func(a fleet.Action) int { return a.Host*k + a.Rank%k }, nil)
}

// population is the pre-existing model of the package doc.
func (g *gen) population(planner *fleet.Planner, pop Population) error {
	g.sims = make([]*fleet.Sim, pop.Accounts)
	hosts := newPowerLaw(g.wl.Hosts, g.wl.HostSkew)
	g.hostOf = func(acct int) int { return hosts.rank(hashUnit(g.wl.Seed, uint64(acct))) }
	g.eventStep = time.Duration(float64(time.Second) / g.wl.EventsPerSecond)
	g.start = g.wl.Start
	accts := newPowerLaw(pop.Accounts, pop.Skew)
	rng := rand.New(rand.NewPCG(g.wl.Seed, 0x706f70)) // "pop"
	before := g.wl.Start.Add(-time.Hour)
	materialise := func(j *job) error {
		s, err := fleet.NewSim(g.wl, j.acct)
		if err != nil {
			return err
		}
		g.sims[j.acct] = s
		return s.Preexist(before, pop.InitialRecords)
	}
	return g.actions(planner, func(fleet.Action) int { return accts.rank(rng.Float64()) }, materialise)
}

// actions executes opts.Actions planned actions, batch by batch; pick maps
// an action onto its account, and materialise (if set) creates an account
// at its first action.
func (g *gen) actions(planner *fleet.Planner, pick func(fleet.Action) int, materialise func(*job) error) error {
	jobs := make([]job, 0, batchActions)
	for done := 0; done < g.opts.Actions; {
		n := min(batchActions, g.opts.Actions-done)
		jobs = jobs[:0]
		for range n {
			a := planner.Next()
			acct := pick(a)
			jobs = append(jobs, job{acct: acct, kind: a.Kind, host: g.hostOf(acct), at: a.Time})
		}
		err := g.run(jobs, func(j *job) {
			if g.sims[j.acct] == nil {
				if j.err = materialise(j); j.err != nil {
					return
				}
			}
			j.evs, j.err = g.sims[j.acct].Step(j.kind, j.at)
		})
		if err != nil {
			return err
		}
		done += n
	}
	return nil
}

// run executes do for every job on the workers and then writes the jobs'
// events in order. Job j goes to worker j.acct mod Workers, so one
// account's jobs run in order on one goroutine and its Sim never crosses
// workers.
func (g *gen) run(jobs []job, do func(j *job)) error {
	var wg sync.WaitGroup
	for wk := range g.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if jobs[i].acct%g.opts.Workers == wk {
					do(&jobs[i])
				}
			}
		}()
	}
	wg.Wait()
	return g.write(jobs)
}

// write sequences and writes the jobs' events in plan order.
func (g *gen) write(jobs []job) error {
	for i := range jobs {
		j := &jobs[i]
		if j.err != nil {
			return j.err
		}
		for _, ev := range j.evs {
			g.seqs[j.host]++
			g.buf = ev.AppendFrame(g.buf[:0], g.seqs[j.host])
			at := j.at.UnixNano()
			if g.eventStep > 0 {
				at = g.start.Add(time.Duration(g.stats.Frames) * g.eventStep).UnixNano()
			}
			rec := capture.Record{Source: j.host, RecvTime: at, Seq: g.seqs[j.host], Frame: g.buf}
			if err := g.w.Write(rec); err != nil {
				return err
			}
			g.stats.Frames++
			g.stats.Bytes += int64(len(g.buf))
		}
		j.evs = nil
	}
	return nil
}

// snapshot renders every account's final DID document as bench/plc serves
// it, on all workers. An account never touched gets its initial document;
// each Sim is dropped once rendered, so the documents replace the Sims in
// memory rather than adding to them.
func (g *gen) snapshot() (capture.Snapshot, error) {
	docs := make([][]byte, len(g.sims))
	errs := make([]error, g.opts.Workers)
	var touched atomic.Int64
	var wg sync.WaitGroup
	for wk := range g.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := wk; i < len(g.sims); i += g.opts.Workers {
				s := g.sims[i]
				if s != nil {
					touched.Add(1)
				} else if s, errs[wk] = fleet.NewSim(g.wl, i); errs[wk] != nil {
					return
				}
				g.sims[i] = nil
				pds := fmt.Sprintf("http://localhost:%d", BasePort+g.hostOf(i))
				if docs[i], errs[wk] = plc.Marshal(s.DID(), s.Doc(pds)); errs[wk] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	g.stats.Touched = int(touched.Load())
	snap := make(capture.Snapshot, len(docs))
	for i, doc := range docs {
		snap[fleet.MakeDID(g.wl.Seed, i)] = doc
	}
	return snap, nil
}
