package migrate

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/atrelay/relay/store"
)

// ErrUsage is returned by RunCLI for bad arguments; usage was printed.
var ErrUsage = errors.New("migrate: usage error")

// Environment variables RunCLI reads for its defaults.
const (
	EnvFromPassword   = "RELAY_MIGRATE_FROM_PASSWORD"
	EnvDataDir        = "RELAY_DATA_DIR"
	EnvTrustedDomains = "RELAY_TRUSTED_DOMAINS"
)

// cliTimeout bounds one migration run.
const cliTimeout = 30 * time.Minute

const cliUsage = `usage: relay migrate --from URL [flags]

Copies a running reference relay's (indigo cmd/relay) hosts, with their
cursors, account limits, trust and status, its domain bans and takedowns,
and its seq position into this relay's database, so that hosts resume where
the reference left them and consumers keep their cursors. Stop this relay
first (the database is written directly); the reference keeps running.
Run with --dry-run first: it prints the plan and writes nothing.

flags:
`

// RunCLI runs `relay migrate <args>`, printing the plan and the outcome to
// stdout.
func RunCLI(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("relay migrate", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprint(stdout, cliUsage)
		fs.PrintDefaults()
	}
	dataDir := os.Getenv(EnvDataDir)
	if dataDir == "" {
		dataDir = "./data"
	}
	trusted := os.Getenv(EnvTrustedDomains)
	if trusted == "" {
		trusted = strings.Join(DefaultTrustedDomains, ",")
	}
	var (
		from      = fs.String("from", "", "the reference relay's public URL, where it serves /admin and /xrpc (e.g. http://127.0.0.1:2470)")
		metrics   = fs.String("from-metrics", "", "its metrics listener (default: the --from host on port 2471)")
		password  = fs.String("from-password", os.Getenv(EnvFromPassword), "one of its admin passwords (default $"+EnvFromPassword+")")
		fromSeq   = fs.Uint64("from-seq", 0, "its next seq, instead of reading "+seqMetric+" from its metrics")
		dir       = fs.String("data-dir", dataDir, "this relay's database directory (default $"+EnvDataDir+" or ./data)")
		domains   = fs.String("trusted-domains", trusted, "its RELAY_TRUSTED_DOMAINS: hosts matching are imported trusted (empty: none)")
		limit     = fs.Uint64("default-account-limit", DefaultAccountLimit, "account limit of hosts the reference's pds/list did not report")
		margin    = fs.Uint64("seq-margin", DefaultSeqMargin, "added to its next seq to give this relay's: more than it will sequence before it is stopped")
		dryRun    = fs.Bool("dry-run", false, "print the plan; write nothing")
		overwrite = fs.Bool("allow-used-database", false, "migrate into a database that already holds events")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if *from == "" || fs.NArg() != 0 {
		fs.Usage()
		return fmt.Errorf("%w: --from is required and no arguments are taken", ErrUsage)
	}
	metricsURL := *metrics
	if metricsURL == "" && *fromSeq == 0 {
		u, err := url.Parse(*from)
		if err != nil || u.Hostname() == "" {
			return fmt.Errorf("%w: --from %q is not a URL", ErrUsage, *from)
		}
		u.Host = net.JoinHostPort(u.Hostname(), "2471")
		u.Path = ""
		metricsURL = u.String()
	}
	if *fromSeq != 0 {
		metricsURL = ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	src, err := Fetch(ctx, FetchConfig{URL: *from, MetricsURL: metricsURL, Password: *password})
	if err != nil {
		return err
	}
	cfg := PlanConfig{TrustedDomains: splitList(*domains), DefaultAccountLimit: *limit, SeqMargin: *margin, NextSeq: *fromSeq}

	st, err := openStore(*dir, *dryRun)
	if err != nil {
		return err
	}
	if st != nil {
		defer st.Close()
		if st.OldestSeq() != store.SeqNone && !*overwrite {
			return fmt.Errorf("migrate: %s already holds events (seqs %d..%d): its consumers would see a seq jump and "+
				"hosts would be rewound to the reference's cursors; pass --allow-used-database to migrate anyway",
				*dir, st.OldestSeq(), st.NewestSeq())
		}
	}
	plan, err := NewPlan(src, st, cfg)
	if err != nil {
		return err
	}
	if err := plan.Print(stdout); err != nil {
		return err
	}
	if *dryRun {
		_, err := fmt.Fprintln(stdout, "dry run: nothing written")
		return err
	}
	res, err := Apply(ctx, plan, st)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "done: %d hosts created, %d updated, %d domain bans, %d takedowns (%d new accounts), next seq %d\n",
		res.HostsCreated, res.HostsUpdated, res.BansAdded, res.TakedownsAdded, res.AccountsCreated, max(plan.NextSeq, plan.CurNextSeq))
	return err
}

// splitList splits a comma-separated list, dropping blanks; an empty
// list is an empty, non-nil slice (trust no domain).
func splitList(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// openStore opens the database in dir. For a dry run a missing directory
// is not created: the plan is made against an empty state (nil store).
func openStore(dir string, dryRun bool) (*store.Store, error) {
	if dryRun {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	// Small caches (a few writes), and no retention pass during the run:
	// the replay window configured for serve is not known here.
	st, err := store.Open(dir, store.Options{BlockCacheBytes: 8 << 20, MemTableBytes: 4 << 20,
		ReplayWindow: 100 * 365 * 24 * time.Hour, RetentionInterval: 24 * time.Hour})
	if err != nil {
		return nil, fmt.Errorf("migrate: open %s (is the relay still running?): %w", dir, err)
	}
	return st, nil
}
