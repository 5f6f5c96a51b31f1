package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/atrelay/relay/engine/admin"
	"github.com/atrelay/relay/engine/firehose"
	"github.com/atrelay/relay/engine/relay"
	"github.com/atrelay/relay/engine/xrpc"
)

// xrpcEngine adapts *relay.Relay to xrpc.Engine, translating the engine's
// refusal sentinels into the ones the public API maps to answers.
type xrpcEngine struct{ r *relay.Relay }

var crawlErrors = []struct{ from, to error }{
	{relay.ErrBadHostname, xrpc.ErrBadHostname},
	{relay.ErrHostBanned, xrpc.ErrHostBanned},
	{relay.ErrHostNotFound, xrpc.ErrHostNotFound},
	{relay.ErrNewHostLimit, xrpc.ErrNewHostLimit},
	{relay.ErrCrawlDisabled, xrpc.ErrCrawlDisabled},
}

func mapErr(err error, table []struct{ from, to error }) error {
	for _, m := range table {
		if errors.Is(err, m.from) {
			return fmt.Errorf("%w: %v", m.to, err)
		}
	}
	return err
}

func (e xrpcEngine) RequestCrawl(ctx context.Context, hostname string) error {
	return mapErr(e.r.RequestCrawl(ctx, hostname), crawlErrors)
}

func (e xrpcEngine) Health(context.Context) error { return e.r.Err() }

// adminEngine adapts *relay.Relay and the hub to admin.Engine.
type adminEngine struct {
	r   *relay.Relay
	hub *firehose.Hub
}

var adminErrors = []struct{ from, to error }{
	{relay.ErrUnknownHost, admin.ErrUnknownHost},
	{relay.ErrUnknownAccount, admin.ErrUnknownAccount},
}

func (e adminEngine) UpstreamConns() []string {
	var out []string
	for _, h := range e.r.Hosts() {
		if h.Connected {
			out = append(out, h.Hostname)
		}
	}
	return out
}

func (e adminEngine) KillUpstream(ctx context.Context, hostname string, ban bool) error {
	if ban {
		return mapErr(e.r.BanHost(hostname), adminErrors)
	}
	return mapErr(e.r.KillUpstream(hostname), adminErrors)
}

func (e adminEngine) CrawlEnabled() bool { return e.r.CrawlEnabled() }

func (e adminEngine) SetCrawlEnabled(_ context.Context, on bool) error {
	e.r.SetCrawlEnabled(on)
	return nil
}

func (e adminEngine) AdminRequestCrawl(ctx context.Context, hostname string) error {
	return mapErr(e.r.AdminRequestCrawl(ctx, hostname), crawlErrors)
}

func (e adminEngine) BanHost(_ context.Context, h string) error {
	return mapErr(e.r.BanHost(h), adminErrors)
}

func (e adminEngine) UnbanHost(_ context.Context, h string) error {
	return mapErr(e.r.UnbanHost(h), adminErrors)
}

func (e adminEngine) BanDomain(_ context.Context, d string) error   { return e.r.BanDomain(d) }
func (e adminEngine) UnbanDomain(_ context.Context, d string) error { return e.r.UnbanDomain(d) }

func (e adminEngine) SetHostLimits(ctx context.Context, hostname string, l admin.HostLimits) error {
	var cur *relay.HostInfo
	for _, h := range e.r.Hosts() {
		if h.Hostname == hostname {
			cur = &h
			break
		}
	}
	if cur == nil {
		return fmt.Errorf("%w: %s", admin.ErrUnknownHost, hostname)
	}
	limit, trusted := cur.AccountLimit, cur.Trusted
	if l.AccountLimit != nil {
		limit = *l.AccountLimit
	}
	if l.Trusted != nil {
		trusted = *l.Trusted
	}
	return mapErr(e.r.SetHostLimits(ctx, hostname, limit, trusted), adminErrors)
}

func (e adminEngine) Takedown(ctx context.Context, did string) error {
	return mapErr(e.r.Takedown(ctx, did), adminErrors)
}

func (e adminEngine) ReverseTakedown(ctx context.Context, did string) error {
	return mapErr(e.r.ReverseTakedown(ctx, did), adminErrors)
}

func (e adminEngine) ResetCursor(_ context.Context, h string) error {
	return mapErr(e.r.ResetCursor(h), adminErrors)
}

func (e adminEngine) Resync(ctx context.Context, did string) error {
	return mapErr(e.r.Resync(ctx, did), adminErrors)
}

func (e adminEngine) Consumers() []admin.Consumer {
	var out []admin.Consumer
	for _, c := range e.hub.Consumers() {
		ac := admin.Consumer{RemoteAddr: c.RemoteAddr, UserAgent: c.UserAgent, Position: c.Position, Lag: c.Lag,
			BytesSent: c.BytesSent, FramesSent: c.FramesSent, ConnectedAt: c.ConnectedAt, Mode: c.Mode.String()}
		if c.HasCursor {
			cur := c.Cursor
			ac.Cursor = &cur
		}
		out = append(out, ac)
	}
	return out
}

// NewHostsPerDay implements admin.NewHostQuota.
func (e adminEngine) NewHostsPerDay() int64 { return int64(e.r.NewHostsPerDay()) }

// SetNewHostsPerDay implements admin.NewHostQuota.
func (e adminEngine) SetNewHostsPerDay(_ context.Context, n int64) error {
	return e.r.SetNewHostsPerDay(int(n))
}
