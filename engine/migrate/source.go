package migrate

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/atrelay/relay/engine/admin"
	"github.com/atrelay/relay/store"
)

// Bounds on what Fetch reads from the reference relay. It is the
// operator's own server, but a wrong URL must not make us read forever.
const (
	maxResponseBytes = 64 << 20
	maxListPages     = 10_000 // listHosts pages of 1,000 hosts
	maxTakedownPages = 10_000 // takedowns pages of 500 DIDs
	listHostsPage    = 1000
	fetchTimeout     = 30 * time.Second // per request
)

// seqMetric is the reference's gauge of the seq its next event will get.
const seqMetric = "disk_persister_current_seq"

// Errors of Fetch.
var (
	// ErrSource: the reference answered something unusable.
	ErrSource = errors.New("migrate: unusable answer from the reference relay")
	// ErrNoSeq: its metrics do not carry disk_persister_current_seq.
	ErrNoSeq = errors.New("migrate: no " + seqMetric + " in the reference relay's metrics")
)

// FetchConfig says where the reference relay is.
type FetchConfig struct {
	// URL is its public listener, where it serves /admin and /xrpc
	// (RELAY_API_BIND, default :2470), e.g. http://127.0.0.1:2470.
	URL string
	// MetricsURL is its metrics listener (RELAY_METRICS_LISTEN, default
	// :2471). Empty: skip it, and NextSeq must come from elsewhere.
	MetricsURL string
	// Password is one of its admin passwords.
	Password string
	// HTTP is the client to use (default: one with a 30 s timeout).
	HTTP *http.Client
	// ListMax is the most hosts the reference's pds/list answers; a full
	// answer means hosts may be missing from it. Default 10,000, the
	// reference's fixed value.
	ListMax int
}

// Source is the reference relay's state as Fetch read it.
type Source struct {
	Hosts      []SourceHost
	DomainBans []string
	Takedowns  []string
	// NextSeq is the seq the reference's next event gets (0 if not read).
	NextSeq uint64
	// ListTruncated is set when pds/list returned its 10,000-host maximum:
	// hosts past it that never delivered an event are not in Hosts.
	ListTruncated bool
}

// SourceHost is one of the reference's hosts.
type SourceHost struct {
	Hostname string
	// SSL is false for hosts it reads over ws:// (development hosts).
	SSL bool
	// Cursor is its last persisted upstream seq, -1 or 0 for none.
	Cursor int64
	// Status is its status name: active, idle, offline, throttled, banned.
	Status string
	// AccountLimit is its account limit, -1 when the host was only in the
	// public listHosts (past the pds/list maximum).
	AccountLimit int64
	AccountCount int64
}

// refListMax is how many hosts the reference's pds/list answers at most.
const refListMax = 10_000

// Fetch reads the reference relay's hosts, bans, takedowns and seq.
func Fetch(ctx context.Context, cfg FetchConfig) (*Source, error) {
	f := fetcher{cfg: cfg, http: cfg.HTTP}
	if f.http == nil {
		f.http = &http.Client{Timeout: fetchTimeout}
	}
	base := strings.TrimRight(cfg.URL, "/")
	if _, err := url.Parse(base); err != nil || base == "" {
		return nil, fmt.Errorf("migrate: reference URL %q: %w", cfg.URL, err)
	}
	src := &Source{}
	var listed []admin.RefHost
	if err := f.getJSON(ctx, base+"/admin/pds/list", true, &listed); err != nil {
		return nil, err
	}
	listMax := cfg.ListMax
	if listMax <= 0 {
		listMax = refListMax
	}
	src.ListTruncated = len(listed) >= listMax
	public, err := f.listHosts(ctx, base)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(listed))
	for _, h := range listed {
		sh := SourceHost{Hostname: h.Host, SSL: h.SSL, Cursor: h.Cursor, AccountLimit: h.RepoLimit, AccountCount: h.RepoCount}
		switch {
		case h.Blocked:
			sh.Status = store.HostBanned.String()
		case h.Registered:
			sh.Status = store.HostActive.String()
		default:
			// Idle, offline or throttled: only listHosts tells which; a
			// host it does not list never delivered an event.
			sh.Status = store.HostIdle.String()
		}
		if p, ok := public.hosts[h.Host]; ok {
			sh.Status, sh.Cursor, sh.AccountCount = p.Status, p.Seq, p.AccountCount
		}
		seen[h.Host] = true
		src.Hosts = append(src.Hosts, sh)
	}
	for _, name := range public.order {
		if seen[name] {
			continue
		}
		p := public.hosts[name]
		src.Hosts = append(src.Hosts, SourceHost{Hostname: name, SSL: !strings.HasPrefix(name, "localhost:"),
			Cursor: p.Seq, Status: p.Status, AccountLimit: -1, AccountCount: p.AccountCount})
	}
	var bans admin.DomainList
	if err := f.getJSON(ctx, base+"/admin/subs/listDomainBans", true, &bans); err != nil {
		return nil, err
	}
	src.DomainBans = bans.BannedDomains
	if src.Takedowns, err = f.takedowns(ctx, base); err != nil {
		return nil, err
	}
	if cfg.MetricsURL != "" {
		if src.NextSeq, err = f.nextSeq(ctx, strings.TrimRight(cfg.MetricsURL, "/")+"/metrics"); err != nil {
			return nil, err
		}
	}
	return src, nil
}

// fetcher does Fetch's requests. Used by one goroutine.
type fetcher struct {
	cfg  FetchConfig
	http *http.Client
}

// get returns the body of a 200 answer to GET u.
func (f *fetcher) get(ctx context.Context, u string, auth bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	if auth {
		req.SetBasicAuth("admin", f.cfg.Password)
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("migrate: GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("migrate: GET %s: %w", u, err)
	}
	if len(b) > maxResponseBytes {
		return nil, fmt.Errorf("%w: GET %s: answer over %d bytes", ErrSource, u, maxResponseBytes)
	}
	if resp.StatusCode != http.StatusOK {
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized {
			hint = " (wrong admin password?)"
		}
		return nil, fmt.Errorf("%w: GET %s: %s%s: %.200s", ErrSource, u, resp.Status, hint, b)
	}
	return b, nil
}

func (f *fetcher) getJSON(ctx context.Context, u string, auth bool, v any) error {
	b, err := f.get(ctx, u, auth)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: GET %s: %v", ErrSource, u, err)
	}
	return nil
}

// publicHost is one host of the reference's listHosts answer.
type publicHost struct {
	Hostname     string `json:"hostname"`
	Seq          int64  `json:"seq"`
	AccountCount int64  `json:"accountCount"`
	Status       string `json:"status"`
}

// publicHosts are listHosts' hosts by name, and their order.
type publicHosts struct {
	hosts map[string]publicHost
	order []string
}

// listHosts pages through the reference's public listHosts.
func (f *fetcher) listHosts(ctx context.Context, base string) (publicHosts, error) {
	out := publicHosts{hosts: map[string]publicHost{}}
	cursor := ""
	for range maxListPages {
		u := base + "/xrpc/com.atproto.sync.listHosts?limit=" + strconv.Itoa(listHostsPage)
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		var page struct {
			Cursor string       `json:"cursor"`
			Hosts  []publicHost `json:"hosts"`
		}
		if err := f.getJSON(ctx, u, false, &page); err != nil {
			return publicHosts{}, err
		}
		for _, h := range page.Hosts {
			if _, dup := out.hosts[h.Hostname]; !dup && h.Hostname != "" {
				out.order = append(out.order, h.Hostname)
			}
			out.hosts[h.Hostname] = h
		}
		if page.Cursor == "" || page.Cursor == cursor || len(page.Hosts) == 0 {
			return out, nil
		}
		cursor = page.Cursor
	}
	return publicHosts{}, fmt.Errorf("%w: listHosts did not end after %d pages", ErrSource, maxListPages)
}

// takedowns pages through the reference's repo/takedowns.
func (f *fetcher) takedowns(ctx context.Context, base string) ([]string, error) {
	var out []string
	var cursor int64
	for range maxTakedownPages {
		u := base + "/admin/repo/takedowns"
		if cursor != 0 {
			u += "?cursor=" + strconv.FormatInt(cursor, 10)
		}
		var page struct {
			DIDs   []string `json:"dids"`
			Cursor int64    `json:"cursor"`
		}
		if err := f.getJSON(ctx, u, true, &page); err != nil {
			return nil, err
		}
		out = append(out, page.DIDs...)
		if page.Cursor == 0 || page.Cursor <= cursor {
			return out, nil
		}
		cursor = page.Cursor
	}
	return nil, fmt.Errorf("%w: takedowns did not end after %d pages", ErrSource, maxTakedownPages)
}

// nextSeq reads disk_persister_current_seq from a Prometheus text page.
func (f *fetcher) nextSeq(ctx context.Context, u string) (uint64, error) {
	b, err := f.get(ctx, u, false)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok || name != seqMetric {
			continue
		}
		// Prometheus writes gauges as floats ("5.123456789e+09"); seqs stay
		// below 2^53, where a float64 is exact.
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || v < 0 || v > 1<<53 || v != math.Trunc(v) {
			return 0, fmt.Errorf("%w: %s %q", ErrSource, seqMetric, value)
		}
		return uint64(v), nil
	}
	return 0, fmt.Errorf("%w (at %s)", ErrNoSeq, u)
}
