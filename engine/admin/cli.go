package admin

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Errors of RunCLI.
var (
	// ErrUsage: unknown subcommand or wrong arguments; usage was printed.
	ErrUsage = errors.New("admin: usage error")
)

// DefaultURL is the admin listener RunCLI talks to unless --url says
// otherwise.
const DefaultURL = "http://127.0.0.1:2471"

// cliTimeout bounds one CLI invocation.
const cliTimeout = 60 * time.Second

const cliUsage = `usage: relay admin [--url URL] [--token TOKEN] <command> [flags] [args]

--url defaults to ` + DefaultURL + `; --token to the first of $RELAY_ADMIN_PASSWORD
(or $RELAY_ADMIN_KEY), which may list several, comma-separated.
Flags of a command go before its arguments.

commands:
  hosts [--limit N] [--cursor C] [--all]   list upstream hosts
  consumers                                list firehose consumers
  ban-host HOST | unban-host HOST          ban / unban a host
  kill-upstream [--ban] HOST               drop a host's connection
  ban-domain DOMAIN | unban-domain DOMAIN  ban / unban a domain and its subdomains
  domains                                  list banned domains
  set-limits [--account-limit N] [--trusted=BOOL] [--per-second N] HOST
  takedown DID | restore DID               take down / restore an account
  takedowns [--cursor C] [--all]           list taken-down accounts
  reset-cursor HOST                        forget a host's upstream cursor
  resync DID                               resynchronize an account from its PDS
  crawl HOST                               subscribe to a host (bypasses public limits)
  toggle-crawl [on|off]                    switch public requestCrawl (no argument: flip)
  new-hosts-per-day [N]                    show, or set until restart, the public new-host limit
`

// RunCLI runs `relay admin <args>`, writing results to stdout.
func RunCLI(args []string, stdout io.Writer) error {
	c := &Client{BaseURL: DefaultURL}
	if ts := EnvTokens(os.Getenv); len(ts) > 0 {
		c.Token = ts[0]
	}
	global := newFlagSet("relay admin", stdout, c)
	if err := global.Parse(args); err != nil {
		return usageError(stdout, err)
	}
	rest := global.Args()
	if len(rest) == 0 {
		return usageError(stdout, errors.New("no command"))
	}
	cmd, ok := commandTable()[rest[0]]
	if !ok {
		return usageError(stdout, fmt.Errorf("unknown command %q", rest[0]))
	}
	fs := newFlagSet("relay admin "+rest[0], stdout, c)
	opts := cmd.flags(fs)
	if err := fs.Parse(rest[1:]); err != nil {
		return usageError(stdout, err)
	}
	if fs.NArg() != cmd.nargs && !(cmd.optionalArg && fs.NArg() == 0) {
		return usageError(stdout, fmt.Errorf("%s takes %d argument(s), got %d", rest[0], cmd.nargs, fs.NArg()))
	}
	if c.Token == "" {
		return usageError(stdout, errors.New("no admin token: pass --token or set RELAY_ADMIN_PASSWORD"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	return cmd.run(ctx, c, fs, opts, stdout)
}

func newFlagSet(name string, out io.Writer, c *Client) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {}
	fs.StringVar(&c.BaseURL, "url", c.BaseURL, "admin API base URL")
	fs.StringVar(&c.Token, "token", c.Token, "admin token (default $RELAY_ADMIN_PASSWORD)")
	return fs
}

func usageError(out io.Writer, err error) error {
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(out, cliUsage)
		return nil
	}
	fmt.Fprintf(out, "relay admin: %v\n%s", err, cliUsage)
	return fmt.Errorf("%w: %v", ErrUsage, err)
}

// cliOpts are the command-specific flag values.
type cliOpts struct {
	limit        int
	cursor       string
	uidCursor    uint64
	all          bool
	ban          bool
	accountLimit uint64
	trusted      bool
	perSecond    uint64
}

// command is one CLI subcommand.
type command struct {
	nargs       int
	optionalArg bool // the argument may be left out
	flags       func(fs *flag.FlagSet) *cliOpts
	run         func(ctx context.Context, c *Client, fs *flag.FlagSet, o *cliOpts, out io.Writer) error
}

func noFlags(*flag.FlagSet) *cliOpts { return &cliOpts{} }

// action makes a one-argument command that prints "ok" on success.
func action(fn func(c *Client, ctx context.Context, arg string) error) command {
	return command{nargs: 1, flags: noFlags, run: func(ctx context.Context, c *Client, fs *flag.FlagSet, _ *cliOpts, out io.Writer) error {
		if err := fn(c, ctx, fs.Arg(0)); err != nil {
			return err
		}
		_, err := fmt.Fprintln(out, "ok")
		return err
	}}
}

// commandTable returns the subcommands by name.
func commandTable() map[string]command {
	return map[string]command{
		"hosts": {flags: func(fs *flag.FlagSet) *cliOpts {
			o := &cliOpts{}
			fs.IntVar(&o.limit, "limit", 0, "hosts per page (server default 500)")
			fs.StringVar(&o.cursor, "cursor", "", "page cursor from a previous call")
			fs.BoolVar(&o.all, "all", false, "follow cursors to the end")
			return o
		}, run: runHosts},
		"consumers":  {flags: noFlags, run: runConsumers},
		"ban-host":   action((*Client).BanHost),
		"unban-host": action((*Client).UnbanHost),
		"kill-upstream": {nargs: 1, flags: func(fs *flag.FlagSet) *cliOpts {
			o := &cliOpts{}
			fs.BoolVar(&o.ban, "ban", false, "also ban the host")
			return o
		}, run: func(ctx context.Context, c *Client, fs *flag.FlagSet, o *cliOpts, out io.Writer) error {
			return printOK(out, c.KillUpstream(ctx, fs.Arg(0), o.ban))
		}},
		"ban-domain":   action((*Client).BanDomain),
		"unban-domain": action((*Client).UnbanDomain),
		"domains": {flags: noFlags, run: func(ctx context.Context, c *Client, _ *flag.FlagSet, _ *cliOpts, out io.Writer) error {
			ds, err := c.Domains(ctx)
			if err != nil {
				return err
			}
			for _, d := range ds {
				fmt.Fprintln(out, d)
			}
			return nil
		}},
		"set-limits": {nargs: 1, flags: func(fs *flag.FlagSet) *cliOpts {
			o := &cliOpts{}
			fs.Uint64Var(&o.accountLimit, "account-limit", 0, "accounts accepted from the host")
			fs.BoolVar(&o.trusted, "trusted", false, "give the host the trusted rate limits")
			fs.Uint64Var(&o.perSecond, "per-second", 0, "events per second accepted from the host")
			return o
		}, run: runSetLimits},
		"takedown": action((*Client).Takedown),
		"restore":  action((*Client).ReverseTakedown),
		"takedowns": {flags: func(fs *flag.FlagSet) *cliOpts {
			o := &cliOpts{}
			fs.Uint64Var(&o.uidCursor, "cursor", 0, "page cursor from a previous call")
			fs.BoolVar(&o.all, "all", false, "follow cursors to the end")
			return o
		}, run: runTakedowns},
		"reset-cursor":      action((*Client).ResetCursor),
		"resync":            action((*Client).Resync),
		"crawl":             action((*Client).AdminRequestCrawl),
		"toggle-crawl":      {nargs: 1, optionalArg: true, flags: noFlags, run: runToggleCrawl},
		"new-hosts-per-day": {nargs: 1, optionalArg: true, flags: noFlags, run: runNewHostsPerDay},
	}
}

func printOK(out io.Writer, err error) error {
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, "ok")
	return err
}

func runHosts(ctx context.Context, c *Client, _ *flag.FlagSet, o *cliOpts, out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tHOSTNAME\tSTATUS\tCONNECTED\tACCOUNTS\tLIMIT\tTRUSTED\tCURSOR\tEVENTS\tLAST ERROR")
	cursor := o.cursor
	for {
		p, err := c.Hosts(ctx, cursor, o.limit)
		if err != nil {
			return err
		}
		for _, h := range p.Hosts {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%v\t%d\t%d\t%v\t%d\t%d\t%s\n", h.ID, h.Hostname, h.Status, h.Connected,
				h.AccountCount, h.AccountLimit, h.Trusted, h.Cursor, h.Events, oneLine(h.LastError))
		}
		cursor = p.Cursor
		if cursor == "" || !o.all {
			break
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if cursor != "" {
		fmt.Fprintf(out, "next cursor: %s\n", cursor)
	}
	return nil
}

func runTakedowns(ctx context.Context, c *Client, _ *flag.FlagSet, o *cliOpts, out io.Writer) error {
	cursor := o.uidCursor
	for {
		p, err := c.Takedowns(ctx, cursor)
		if err != nil {
			return err
		}
		for _, d := range p.DIDs {
			fmt.Fprintln(out, d)
		}
		cursor = p.Cursor
		if cursor == 0 || !o.all {
			break
		}
	}
	if cursor != 0 {
		fmt.Fprintf(out, "next cursor: %d\n", cursor)
	}
	return nil
}

func runNewHostsPerDay(ctx context.Context, c *Client, fs *flag.FlagSet, _ *cliOpts, out io.Writer) error {
	if fs.NArg() == 1 {
		n, err := strconv.ParseInt(fs.Arg(0), 10, 64)
		if err != nil || n < 0 {
			return usageError(out, fmt.Errorf("new-hosts-per-day takes a non-negative integer, not %q", fs.Arg(0)))
		}
		if err := c.SetNewHostsPerDay(ctx, n); err != nil {
			return err
		}
	}
	n, err := c.NewHostsPerDay(ctx)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "new hosts per day: %d\n", n)
	return err
}

// oneLine keeps a table row on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func runConsumers(ctx context.Context, c *Client, _ *flag.FlagSet, _ *cliOpts, out io.Writer) error {
	cs, err := c.Consumers(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REMOTE\tUSER AGENT\tMODE\tCURSOR\tPOSITION\tLAG\tFRAMES\tBYTES\tCONNECTED")
	for _, x := range cs {
		cur := "-"
		if x.Cursor != nil {
			cur = strconv.FormatUint(*x.Cursor, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", x.RemoteAddr, oneLine(x.UserAgent), x.Mode, cur,
			x.Position, x.Lag, x.FramesSent, x.BytesSent, x.ConnectedAt.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func runSetLimits(ctx context.Context, c *Client, fs *flag.FlagSet, o *cliOpts, out io.Writer) error {
	var l HostLimits
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "account-limit":
			l.AccountLimit = &o.accountLimit
		case "trusted":
			l.Trusted = &o.trusted
		case "per-second":
			l.PerSecond = &o.perSecond
		}
	})
	if l.empty() {
		return usageError(out, errors.New("set-limits needs --account-limit, --trusted or --per-second"))
	}
	return printOK(out, c.SetHostLimits(ctx, fs.Arg(0), l))
}

func runToggleCrawl(ctx context.Context, c *Client, fs *flag.FlagSet, _ *cliOpts, out io.Writer) error {
	var enable bool
	switch fs.Arg(0) {
	case "on", "true", "enable":
		enable = true
	case "off", "false", "disable":
		enable = false
	case "":
		cur, err := c.CrawlEnabled(ctx)
		if err != nil {
			return err
		}
		enable = !cur
	default:
		return usageError(out, fmt.Errorf("toggle-crawl takes on or off, not %q", fs.Arg(0)))
	}
	if err := c.SetCrawlEnabled(ctx, enable); err != nil {
		return err
	}
	state := "off"
	if enable {
		state = "on"
	}
	_, err := fmt.Fprintf(out, "public requestCrawl %s\n", state)
	return err
}
