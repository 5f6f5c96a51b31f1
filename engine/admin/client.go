package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxResponseBytes bounds what the client reads from the admin API.
const maxResponseBytes = 64 << 20

// Client calls the admin API. Set the fields before the first call; it is
// safe for concurrent use afterwards.
type Client struct {
	// BaseURL is the admin listener, e.g. http://127.0.0.1:2471.
	BaseURL string
	// Token is the admin token, sent as a Bearer credential.
	Token string
	// HTTP is the client to use (default: one with a 30 s timeout).
	HTTP *http.Client
}

// xrpcErrorBody is the XRPC error shape, as the client reads it.
type xrpcErrorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// APIError is an error answer from the admin API.
type APIError struct {
	Status int // HTTP status
	// Name is the XRPC error name for the answers that carry one
	// (requestCrawl), else the status text, e.g. "Not Found".
	Name    string
	Message string
}

// Error formats the answer.
func (e *APIError) Error() string {
	return fmt.Sprintf("admin API: %d %s: %s", e.Status, e.Name, e.Message)
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// call sends method path with body in (nil for none) and decodes the
// answer into out (nil to discard it).
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("admin client: encoding request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return fmt.Errorf("admin client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("admin client: reading %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := &APIError{Status: resp.StatusCode, Name: http.StatusText(resp.StatusCode)}
		var eb xrpcErrorBody
		switch {
		case json.Unmarshal(b, &eb) != nil || eb.Error == "":
			e.Message = strings.TrimSpace(string(b))
		case eb.Message != "": // XRPC shape: a name and a message
			e.Name, e.Message = eb.Error, eb.Message
		default: // the reference's admin shape: the message alone
			e.Message = eb.Error
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("admin client: decoding %s: %w", path, err)
	}
	return nil
}

// Hosts returns one page of hosts after cursor ("" for the first page);
// limit 0 takes the server's default.
func (c *Client) Hosts(ctx context.Context, cursor string, limit int) (HostPage, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	q.Set("format", formatRelay)
	var p HostPage
	err := c.call(ctx, http.MethodGet, "/admin/pds/list?"+q.Encode(), nil, &p)
	return p, err
}

// UpstreamConns returns the hostnames with a live upstream connection.
func (c *Client) UpstreamConns(ctx context.Context) ([]string, error) {
	var out []string
	err := c.call(ctx, http.MethodGet, "/admin/subs/getUpstreamConns", nil, &out)
	return out, err
}

// KillUpstream drops the connection to host, banning it if ban.
func (c *Client) KillUpstream(ctx context.Context, host string, ban bool) error {
	return c.call(ctx, http.MethodPost, "/admin/subs/killUpstream", input{Host: host, Block: &ban}, nil)
}

// Consumers lists the connected firehose consumers.
func (c *Client) Consumers(ctx context.Context) ([]Consumer, error) {
	var out []Consumer
	err := c.call(ctx, http.MethodGet, "/admin/consumers/list?format="+formatRelay, nil, &out)
	return out, err
}

// BanHost bans host and drops its connection.
func (c *Client) BanHost(ctx context.Context, host string) error {
	return c.call(ctx, http.MethodPost, "/admin/pds/block", input{Host: host}, nil)
}

// UnbanHost lifts a host ban.
func (c *Client) UnbanHost(ctx context.Context, host string) error {
	return c.call(ctx, http.MethodPost, "/admin/pds/unblock", input{Host: host}, nil)
}

// BanDomain bans a domain and its subdomains.
func (c *Client) BanDomain(ctx context.Context, domain string) error {
	return c.call(ctx, http.MethodPost, "/admin/domain/ban", input{Domain: domain}, nil)
}

// UnbanDomain lifts a domain ban.
func (c *Client) UnbanDomain(ctx context.Context, domain string) error {
	return c.call(ctx, http.MethodPost, "/admin/domain/unban", input{Domain: domain}, nil)
}

// Domains returns the banned domains.
func (c *Client) Domains(ctx context.Context) ([]string, error) {
	var out DomainList
	err := c.call(ctx, http.MethodGet, "/admin/domain/list", nil, &out)
	return out.BannedDomains, err
}

// SetHostLimits changes the non-nil limits of host.
func (c *Client) SetHostLimits(ctx context.Context, host string, l HostLimits) error {
	in := input{Host: host, AccountLimit: l.AccountLimit, Trusted: l.Trusted}
	if l.PerSecond != nil {
		p := float64(*l.PerSecond)
		in.PerSecond = &p
	}
	return c.call(ctx, http.MethodPost, "/admin/pds/changeLimits", in, nil)
}

// Takedown takes an account down.
func (c *Client) Takedown(ctx context.Context, did string) error {
	return c.call(ctx, http.MethodPost, "/admin/repo/takeDown", input{DID: did}, nil)
}

// ReverseTakedown reverses an account takedown.
func (c *Client) ReverseTakedown(ctx context.Context, did string) error {
	return c.call(ctx, http.MethodPost, "/admin/repo/reverseTakedown", input{DID: did}, nil)
}

// Takedowns returns one page of taken-down DIDs after cursor (0 for the
// first page); the page's Cursor is 0 on the last one.
func (c *Client) Takedowns(ctx context.Context, cursor uint64) (TakedownPage, error) {
	path := "/admin/repo/takedowns"
	if cursor != 0 {
		path += "?cursor=" + strconv.FormatUint(cursor, 10)
	}
	var p TakedownPage
	err := c.call(ctx, http.MethodGet, path, nil, &p)
	return p, err
}

// ResetCursor forgets host's upstream cursor.
func (c *Client) ResetCursor(ctx context.Context, host string) error {
	return c.call(ctx, http.MethodPost, "/admin/pds/resetCursor", input{Host: host}, nil)
}

// Resync asks the relay to resynchronize an account from its PDS.
func (c *Client) Resync(ctx context.Context, did string) error {
	return c.call(ctx, http.MethodPost, "/admin/repo/resync", input{DID: did}, nil)
}

// AdminRequestCrawl subscribes the relay to host, bypassing the public limits.
func (c *Client) AdminRequestCrawl(ctx context.Context, host string) error {
	return c.call(ctx, http.MethodPost, "/admin/pds/requestCrawl", input{Hostname: host}, nil)
}

// CrawlEnabled reports whether public requestCrawl is accepted.
func (c *Client) CrawlEnabled(ctx context.Context) (bool, error) {
	var out EnabledBody
	err := c.call(ctx, http.MethodGet, "/admin/subs/getEnabled", nil, &out)
	return out.Enabled, err
}

// SetCrawlEnabled switches public requestCrawl on or off.
func (c *Client) SetCrawlEnabled(ctx context.Context, enabled bool) error {
	return c.call(ctx, http.MethodPost, "/admin/subs/setEnabled", input{Enabled: &enabled}, nil)
}

// NewHostsPerDay returns the bound on hosts public requestCrawl may add
// per day.
func (c *Client) NewHostsPerDay(ctx context.Context) (int64, error) {
	var out PerDayLimit
	err := c.call(ctx, http.MethodGet, "/admin/subs/perDayLimit", nil, &out)
	return out.Limit, err
}

// SetNewHostsPerDay changes that bound until the relay restarts.
func (c *Client) SetNewHostsPerDay(ctx context.Context, n int64) error {
	return c.call(ctx, http.MethodPost, "/admin/subs/setPerDayLimit?limit="+strconv.FormatInt(n, 10), nil, nil)
}
