// Package diskmodel measures what the relay's event log costs on disk: it
// appends a capture's events into a fresh store (the relay's own store
// package, default options, the relay's seq rewrite) with a clock that
// follows the capture's receive times, optionally sped up, runs retention
// as that clock advances, and reports bytes per retained event, Pebble's
// write amplification and the time spent compacting, from which the disk
// for a replay window is extrapolated (the `relay bench disk` command).
//
// # What is modelled and what is not
//
// Every event is appended as the relay's sequencer would append it once
// validated: its frame with the relay's seq, its account (#commit rev and
// commit CID; the data CID is stood in by the commit CID, which has the
// same length, so account rows have their real size), one host per source.
// Validation, identities and consumers are left out: they write nothing to
// the event log. Retention runs every Options.RetentionEvery of model time
// over a window of Options.Window, so a capture spanning more model time
// than the window reaches the steady state the disk must hold.
//
// Model time is the capture's receive time multiplied by Options.TimeScale
// from its first frame: a 30-minute capture at TimeScale 12 spans 6 hours.
// Speeding time up leaves bytes per event unchanged and raises the event
// rate per model second, which is what a busier network would do.
package diskmodel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/atrelay/relay/bench/capture"
	"github.com/atrelay/relay/store"
)

// ErrBadOptions: an option is out of range; the error names it.
var ErrBadOptions = errors.New("diskmodel: bad options")

// Options configure Run. Zero fields take the defaults.
type Options struct {
	// Dir is the store's directory; it must not hold a database yet.
	Dir string
	// Window is the replay window retention keeps (default 72h, the
	// relay's default).
	Window time.Duration
	// TimeScale multiplies the capture's receive-time offsets into model
	// time (default 1).
	TimeScale float64
	// RetentionEvery is how often, in model time, retention runs (default
	// 10 minutes).
	RetentionEvery time.Duration
	// BatchEvents is how many events one Append carries (default 256, the
	// order of the relay's group commits under load).
	BatchEvents int
}

func (o Options) withDefaults() Options {
	if o.Window == 0 {
		o.Window = store.DefaultReplayWindow
	}
	if o.TimeScale == 0 {
		o.TimeScale = 1
	}
	if o.RetentionEvery == 0 {
		o.RetentionEvery = 10 * time.Minute
	}
	if o.BatchEvents == 0 {
		o.BatchEvents = 256
	}
	return o
}

func (o Options) validate() error {
	var bad []error
	if o.Dir == "" {
		bad = append(bad, errors.New("Dir is empty"))
	}
	if o.Window < time.Minute {
		bad = append(bad, fmt.Errorf("Window %v below a minute", o.Window))
	}
	if !(o.TimeScale > 0 && o.TimeScale <= 1e6) {
		bad = append(bad, fmt.Errorf("TimeScale %v not in (0, 1e6]", o.TimeScale))
	}
	if o.RetentionEvery <= 0 {
		bad = append(bad, fmt.Errorf("RetentionEvery %v not positive", o.RetentionEvery))
	}
	if o.BatchEvents < 1 || o.BatchEvents > store.DefaultMaxBatchEvents {
		bad = append(bad, fmt.Errorf("BatchEvents %d not in 1..%d", o.BatchEvents, store.DefaultMaxBatchEvents))
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrBadOptions, errors.Join(bad...))
}

// Report is what Run measured. Byte counts are Pebble's own.
type Report struct {
	Events     int64         // events appended (frames with a seq)
	FrameBytes int64         // their frame bytes, as the relay stores them
	Retained   int64         // events in the window at the end
	ModelSpan  time.Duration // model time from the first to the last event
	// DiskBytes is every live file at the end (tables, WAL, manifest).
	DiskBytes uint64
	// WALBytes is what the WAL received; FlushedBytes and CompactedBytes
	// what flushes and compactions wrote to tables.
	WALBytes, FlushedBytes, CompactedBytes uint64
	// WriteAmp is Pebble's: (WAL + flushed + compacted) ÷ WAL.
	WriteAmp float64
	// Compactions and CompactionTime are Pebble's count and cumulative
	// wall time of compactions (an upper bound of their CPU, which they
	// spend on one background goroutine each).
	Compactions    int64
	CompactionTime time.Duration
	// CPU is the whole process's user+system time during Run; Elapsed its
	// wall time.
	CPU, Elapsed time.Duration
}

// BytesPerEvent is the disk held per retained event.
func (r Report) BytesPerEvent() float64 {
	if r.Retained == 0 {
		return 0
	}
	return float64(r.DiskBytes) / float64(r.Retained)
}

// DiskFor extrapolates the disk a window of d at eventsPerSecond needs:
// BytesPerEvent times the events in the window.
func (r Report) DiskFor(d time.Duration, eventsPerSecond float64) float64 {
	return r.BytesPerEvent() * eventsPerSecond * d.Seconds()
}

// clock is the store's model clock; single goroutine (Run's), read by the
// store only inside Append and RunRetention, which Run calls.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// Run appends every event of c into a new store at opts.Dir and reports.
func Run(ctx context.Context, c *capture.Capture, opts Options) (Report, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return Report{}, err
	}
	began, cpu0 := time.Now(), processCPU()
	clk := &clock{}
	st, err := store.Open(opts.Dir, store.Options{Now: clk.Now, ReplayWindow: opts.Window, RetentionInterval: 1 << 62})
	if err != nil {
		return Report{}, err
	}
	defer st.Close()
	hosts := make([]store.HostID, len(c.Header.Sources))
	for i, src := range c.Header.Sources {
		h, err := st.CreateHost(store.NewHost{Hostname: src.Hostname, Status: store.HostActive, Trusted: true})
		if err != nil {
			return Report{}, err
		}
		hosts[i] = h.ID
	}
	it, err := c.Records()
	if err != nil {
		return Report{}, err
	}
	defer it.Close()
	b := newBatcher(st, opts.BatchEvents)
	var rep Report
	var first, nextRetention time.Time
	for {
		rec, err := it.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Report{}, err
		}
		if err := ctx.Err(); err != nil {
			return Report{}, err
		}
		recv := time.Unix(0, rec.RecvTime)
		if first.IsZero() {
			first, nextRetention = recv, recv.Add(opts.RetentionEvery)
		}
		clk.now = first.Add(time.Duration(float64(recv.Sub(first)) * opts.TimeScale))
		if !clk.now.Before(nextRetention) {
			if err := b.flush(); err != nil {
				return Report{}, err
			}
			if _, err := st.RunRetention(ctx); err != nil {
				return Report{}, err
			}
			nextRetention = clk.now.Add(opts.RetentionEvery)
		}
		n, err := b.add(rec.Frame, hosts[rec.Source], uint64(rec.Seq))
		if err != nil {
			return Report{}, err
		}
		rep.Events += int64(n)
		rep.FrameBytes += int64(n * len(rec.Frame))
	}
	if err := b.flush(); err != nil {
		return Report{}, err
	}
	if _, err := st.RunRetention(ctx); err != nil {
		return Report{}, err
	}
	rep.ModelSpan = clk.now.Sub(first)
	if newest := st.NewestSeq(); newest != store.SeqNone {
		rep.Retained = int64(newest - st.OldestSeq() + 1)
	}
	m := st.Pebble()
	total := m.Total()
	rep.DiskBytes = m.DiskSpaceUsage()
	rep.WALBytes = m.WAL.BytesWritten
	rep.FlushedBytes = total.TableBytesFlushed - total.TableBytesIn
	rep.CompactedBytes = total.TableBytesCompacted
	rep.WriteAmp = total.WriteAmp()
	rep.Compactions = m.Compact.Count
	rep.CompactionTime = m.Compact.Duration
	rep.CPU, rep.Elapsed = processCPU()-cpu0, time.Since(began)
	return rep, nil
}

// processCPU is the process's user+system time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
