package diskmodel

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/atrelay/relay/bench/capture"
	"github.com/atrelay/relay/store"
)

// Network figures the extrapolation uses by default: the live network's
// average event rate (shared/NOTES.md: 300–450 events/s, upper end) and
// issue 16's frame volume (about 200 GB of frames a day).
const (
	DefaultNetworkEventsPerSecond = 450
	DefaultNetworkFrameBytesDay   = 200e9
)

// RunCLI is `relay bench disk`: it runs the model on a capture file and
// prints the report and the disk a window needs at network rate.
//
//	bench disk --capture FILE --dir DIR [--window 72h] [--time-scale S] [--retention-every 10m]
//	           [--extrapolate 72h] [--network-rate 450] [--network-bytes-per-day 200e9]
func RunCLI(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench disk", flag.ContinueOnError)
	fs.SetOutput(stdout)
	path := fs.String("capture", "", "capture file or shared-format folder to append")
	dir := fs.String("dir", "", "directory for the model's store (must not exist or be empty; left in place)")
	window := fs.Duration("window", 0, "replay window retention keeps (0: the relay's default, 72h)")
	scale := fs.Float64("time-scale", 1, "model time = receive time × this, from the first frame")
	every := fs.Duration("retention-every", 0, "retention period in model time (0: 10m)")
	target := fs.Duration("extrapolate", store.DefaultReplayWindow, "window to extrapolate the disk for")
	rate := fs.Float64("network-rate", DefaultNetworkEventsPerSecond, "events/s to extrapolate the window's disk to")
	perDay := fs.Float64("network-bytes-per-day", DefaultNetworkFrameBytesDay, "frame bytes a day to extrapolate the window's disk to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || *dir == "" || fs.NArg() != 0 {
		return errors.New("usage: relay bench disk --capture FILE --dir DIR [--window 72h] [--time-scale S]")
	}
	c, err := capture.OpenPath(*path)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	opts := Options{Dir: *dir, Window: *window, TimeScale: *scale, RetentionEvery: *every}
	rep, err := Run(ctx, c, opts)
	if err != nil {
		return err
	}
	w := opts.withDefaults().Window
	gib := func(b float64) string { return fmt.Sprintf("%.1f GiB", b/(1<<30)) }
	fmt.Fprintf(stdout, "appended     %d events, %d frame bytes (%.0f B/frame), %v of model time, window %v\n",
		rep.Events, rep.FrameBytes, float64(rep.FrameBytes)/float64(max(rep.Events, 1)), rep.ModelSpan.Round(time.Second), w)
	fmt.Fprintf(stdout, "on disk      %d bytes for %d retained events: %.0f B/event (%.2f × the frame bytes)\n",
		rep.DiskBytes, rep.Retained, rep.BytesPerEvent(), rep.diskPerFrameByte())
	fmt.Fprintf(stdout, "pebble       WAL %d, flushed %d, compacted %d bytes: write amplification %.2f\n",
		rep.WALBytes, rep.FlushedBytes, rep.CompactedBytes, rep.WriteAmp)
	fmt.Fprintf(stdout, "cpu          %d compactions, %v compacting (wall time); process %v CPU in %v (%.1f µs/event)\n",
		rep.Compactions, rep.CompactionTime.Round(time.Millisecond), rep.CPU.Round(time.Millisecond),
		rep.Elapsed.Round(time.Millisecond), float64(rep.CPU.Microseconds())/float64(max(rep.Events, 1)))
	fmt.Fprintf(stdout, "window %v  at %.0f events/s: %s; at %.0f GB of frames a day: %s\n", *target,
		*rate, gib(rep.DiskFor(*target, *rate)), *perDay/1e9, gib(rep.diskPerFrameByte()**perDay*target.Hours()/24))
	return nil
}

// diskPerFrameByte is the disk held per byte of retained frames, the
// retained frames' bytes estimated at the average frame size.
func (r Report) diskPerFrameByte() float64 {
	if r.Retained == 0 || r.FrameBytes == 0 {
		return 0
	}
	return float64(r.DiskBytes) / (float64(r.FrameBytes) * float64(r.Retained) / float64(r.Events))
}
