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
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
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
	// Workers is the number of signing goroutines (default GOMAXPROCS).
	Workers int
	// Note is stored in the capture header.
	Note string
}

// Stats summarize a generation.
type Stats struct {
	Frames   int64 // frames written
	Bytes    int64 // frame bytes written
	Accounts int
	Elapsed  time.Duration
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
	sim  *fleet.Sim
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
	g := &gen{opts: opts, w: cw, seqs: make([]int64, wl.Hosts)}
	sims := make([]*fleet.Sim, wl.Hosts*wl.AccountsPerHost)

	// Account creation: build the Sims (key derivation) inside the jobs.
	jobs := make([]job, len(sims))
	for i := range jobs {
		jobs[i] = job{host: i / max(wl.AccountsPerHost, 1), at: wl.Start}
	}
	g.run(jobs, func(i int, j *job) {
		s, err := fleet.NewSim(&wl, i)
		if err != nil {
			j.err = err
			return
		}
		sims[i], j.sim = s, s
		j.evs, j.err = s.Genesis(j.at)
	})
	if err := g.write(jobs); err != nil {
		return Stats{}, err
	}
	for done := 0; done < opts.Actions && len(sims) > 0; {
		n := min(batchActions, opts.Actions-done)
		jobs = jobs[:0]
		for range n {
			a := planner.Next()
			s := sims[a.Host*wl.AccountsPerHost+a.Rank%wl.AccountsPerHost]
			jobs = append(jobs, job{sim: s, kind: a.Kind, host: a.Host, at: a.Time})
		}
		g.run(jobs, func(_ int, j *job) { j.evs, j.err = j.sim.Step(j.kind, j.at) })
		if err := g.write(jobs); err != nil {
			return Stats{}, err
		}
		done += n
	}
	snap, err := snapshot(sims, wl.AccountsPerHost)
	if err != nil {
		return Stats{}, err
	}
	cw.SetSnapshot(snap)
	if err := cw.Close(); err != nil {
		return Stats{}, err
	}
	g.stats.Accounts = len(sims)
	g.stats.Elapsed = time.Since(began)
	return g.stats, nil
}

// gen is one generation's writer side. Single goroutine except run's
// workers, which touch only their own jobs.
type gen struct {
	opts  Options
	w     *capture.Writer
	seqs  []int64 // last seq per host
	buf   []byte
	stats Stats
}

// run executes do for every job; job i goes to worker owner(i), where a
// job's owner is its account, so one account's jobs run in order on one
// goroutine.
func (g *gen) run(jobs []job, do func(i int, j *job)) {
	owners := make([]int, len(jobs))
	for i := range jobs {
		owners[i] = i
		if jobs[i].sim != nil {
			owners[i] = accountOwner(jobs[i].sim)
		}
	}
	var wg sync.WaitGroup
	for wk := range g.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if owners[i]%g.opts.Workers == wk {
					do(i, &jobs[i])
				}
			}
		}()
	}
	wg.Wait()
}

// accountOwner maps an account onto a stable worker key.
func accountOwner(s *fleet.Sim) int {
	h := 0
	for _, c := range []byte(s.DID()) {
		h = h*31 + int(c)
	}
	return h & 0x7fffffff
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
			rec := capture.Record{Source: j.host, RecvTime: j.at.UnixNano(), Seq: g.seqs[j.host], Frame: g.buf}
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

// snapshot renders every account's final DID document through a fake PLC,
// so the documents have exactly the shape bench/plc serves.
func snapshot(sims []*fleet.Sim, perHost int) (capture.Snapshot, error) {
	dir := plc.New()
	snap := capture.Snapshot{}
	for i, s := range sims {
		pds := fmt.Sprintf("http://localhost:%d", BasePort+i/perHost)
		if err := dir.Put(s.DID(), s.Doc(pds)); err != nil {
			return nil, err
		}
		rec := httptest.NewRecorder()
		dir.ServeHTTP(rec, httptestRequest("/"+s.DID()))
		if rec.Code != http.StatusOK {
			return nil, fmt.Errorf("generate: rendering %s: status %d", s.DID(), rec.Code)
		}
		snap[s.DID()] = rec.Body.Bytes()
	}
	return snap, nil
}

func httptestRequest(path string) *http.Request {
	return httptest.NewRequest(http.MethodGet, path, nil)
}
