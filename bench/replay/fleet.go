package replay

import (
	"context"
	"net/url"

	"github.com/atrelay/relay/bench/capture"
	"github.com/atrelay/relay/bench/plc"
)

// Fleet is a capture replayed as its hosts plus a fake PLC directory whose
// documents point at those hosts: everything a relay test needs.
type Fleet struct {
	Replay    *Replayer
	PLC       *plc.Server
	Hostnames []string // each host's name (Host.Name), in capture source order
	PLCURL    string   // http://127.0.0.1:PORT of the fake PLC

	stop func() bool // static: detaches Close from the context
}

// StartFromShared starts a Fleet for a shared-format capture folder (see
// capture.ImportShared), e.g. fixtures.Path("captures/realpds-2").
func StartFromShared(ctx context.Context, dir string, opts Options) (*Fleet, error) {
	c, err := capture.ImportShared(dir)
	if err != nil {
		return nil, err
	}
	return Start(ctx, c, opts)
}

// Start starts a Fleet for any capture: one replay host per source, and a
// fake PLC loaded from the capture's identity snapshot with every
// #atproto_pds endpoint naming a source's hostname rewritten to its replay
// host's URL (http://localhost:PORT, or https://pds-N.localhost:PORT with
// Options.TLS). Everything stops on Close or when ctx is cancelled.
func Start(ctx context.Context, c *capture.Capture, opts Options) (*Fleet, error) {
	r, err := New(c, opts)
	if err != nil {
		return nil, err
	}
	byOriginal := map[string]string{}
	f := &Fleet{Replay: r, PLC: plc.New()}
	for _, h := range r.Hosts() {
		byOriginal[h.Original] = h.URL()
		f.Hostnames = append(f.Hostnames, h.Name)
	}
	rewrite := func(endpoint string) string {
		u, err := url.Parse(endpoint)
		if err != nil {
			return endpoint
		}
		if to, ok := byOriginal[u.Host]; ok {
			return to
		}
		return endpoint
	}
	if err := f.PLC.LoadSnapshot(c.Identities, rewrite); err != nil {
		r.Close()
		return nil, err
	}
	if err := f.PLC.Start(""); err != nil {
		r.Close()
		return nil, err
	}
	f.PLCURL = f.PLC.URL()
	f.stop = context.AfterFunc(ctx, func() { f.Close() })
	return f, nil
}

// Close stops the replay hosts and the fake PLC.
func (f *Fleet) Close() error {
	f.stop()
	f.Replay.Close()
	return f.PLC.Close()
}
