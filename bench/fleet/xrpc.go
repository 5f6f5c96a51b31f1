package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/atrelay/relay/engine/httpjson"
)

// listRepos page sizes (the lexicon's bounds and default).
const (
	listReposDefault = 500
	listReposMax     = 1000
)

func (h *Host) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/xrpc/com.atproto.sync.subscribeRepos", h.subscribe)
	mux.HandleFunc("/xrpc/com.atproto.sync.getRepo", h.getRepo)
	mux.HandleFunc("/xrpc/com.atproto.sync.getLatestCommit", h.getLatestCommit)
	mux.HandleFunc("/xrpc/com.atproto.sync.getRepoStatus", h.getRepoStatus)
	mux.HandleFunc("/xrpc/com.atproto.sync.listRepos", h.listRepos)
	mux.HandleFunc("/xrpc/com.atproto.server.describeServer", func(w http.ResponseWriter, _ *http.Request) {
		httpjson.Write(w, http.StatusOK, map[string]any{"did": "did:web:localhost", "availableUserDomains": []string{".test"}})
	})
	mux.HandleFunc("/xrpc/_health", func(w http.ResponseWriter, _ *http.Request) {
		httpjson.Write(w, http.StatusOK, map[string]string{"version": "fleet"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		httpjson.Error(w, http.StatusNotImplemented, "MethodNotImplemented", "not served by the fleet host")
	})
	return mux
}

// repoAccount finds the ?did= account homed here, answering the error
// itself when there is none. The account is returned locked.
func (h *Host) repoAccount(w http.ResponseWriter, req *http.Request) *Account {
	did := req.URL.Query().Get("did")
	if !strings.HasPrefix(did, "did:") {
		httpjson.Error(w, http.StatusBadRequest, "InvalidRequest", "did is required")
		return nil
	}
	a := h.account(did)
	if a == nil {
		httpjson.Error(w, http.StatusBadRequest, "RepoNotFound", "no repo for "+did)
		return nil
	}
	a.mu.Lock()
	if a.home != h {
		a.mu.Unlock()
		httpjson.Error(w, http.StatusBadRequest, "RepoNotFound", "repo moved away")
		return nil
	}
	return a
}

// inactiveError answers the reference PDS error for an account that is
// not active, reporting whether it did.
func inactiveError(w http.ResponseWriter, st *accountState) bool {
	switch st.status {
	case StatusDeactivated:
		httpjson.Error(w, http.StatusBadRequest, "RepoDeactivated", "repo is deactivated")
	case StatusDeleted:
		httpjson.Error(w, http.StatusBadRequest, "RepoNotFound", "repo was deleted")
	default:
		return false
	}
	return true
}

// getRepo serves the full repository CAR (internal/repo export).
func (h *Host) getRepo(w http.ResponseWriter, req *http.Request) {
	a := h.repoAccount(w, req)
	if a == nil {
		return
	}
	if inactiveError(w, a.st) {
		a.mu.Unlock()
		return
	}
	car, err := a.st.repo.ExportCAR()
	a.mu.Unlock()
	if err != nil {
		httpjson.Error(w, http.StatusInternalServerError, "InternalServerError", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/vnd.ipld.car")
	w.Write(car)
}

func (h *Host) getLatestCommit(w http.ResponseWriter, req *http.Request) {
	a := h.repoAccount(w, req)
	if a == nil {
		return
	}
	defer a.mu.Unlock()
	if inactiveError(w, a.st) {
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"cid": a.st.repo.CommitCID().String(), "rev": a.st.repo.Rev()})
}

func (h *Host) getRepoStatus(w http.ResponseWriter, req *http.Request) {
	a := h.repoAccount(w, req)
	if a == nil {
		return
	}
	defer a.mu.Unlock()
	out := map[string]any{"did": a.DID, "active": a.st.status == StatusActive, "rev": a.st.repo.Rev()}
	if a.st.status != StatusActive {
		out["status"] = a.st.status
	}
	httpjson.Write(w, http.StatusOK, out)
}

// RepoEntry is one listRepos row.
type RepoEntry struct {
	DID    string `json:"did"`
	Head   string `json:"head"`
	Rev    string `json:"rev"`
	Active bool   `json:"active"`
	Status string `json:"status,omitempty"`
}

// ListReposPage is a listRepos response.
type ListReposPage struct {
	Cursor string      `json:"cursor,omitempty"`
	Repos  []RepoEntry `json:"repos"`
}

// listRepos pages through the host's accounts in creation order; the
// cursor is the number of accounts already listed, sent only when the page
// was full.
func (h *Host) listRepos(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	limit := listReposDefault
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > listReposMax {
			httpjson.Error(w, http.StatusBadRequest, "InvalidRequest", "limit must be 1..1000")
			return
		}
		limit = n
	}
	from := 0
	if s := q.Get("cursor"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			httpjson.Error(w, http.StatusBadRequest, "InvalidRequest", "bad cursor")
			return
		}
		from = n
	}
	h.mu.Lock()
	var page []*Account
	if from < len(h.mu.accounts) {
		page = append(page, h.mu.accounts[from:min(from+limit, len(h.mu.accounts))]...)
	}
	h.mu.Unlock()
	out := ListReposPage{Repos: make([]RepoEntry, 0, len(page))}
	for _, a := range page {
		a.mu.Lock()
		e := RepoEntry{DID: a.DID, Head: a.st.repo.CommitCID().String(), Rev: a.st.repo.Rev(),
			Active: a.st.status == StatusActive, Status: a.st.status}
		a.mu.Unlock()
		out.Repos = append(out.Repos, e)
	}
	if len(page) == limit {
		out.Cursor = strconv.Itoa(from + limit)
	}
	httpjson.Write(w, http.StatusOK, out)
}

// requestCrawl POSTs {"hostname": name} to relayURL's requestCrawl.
func requestCrawl(ctx context.Context, c *http.Client, relayURL, name string) error {
	body, _ := json.Marshal(map[string]string{"hostname": name})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		strings.TrimRight(relayURL, "/")+"/xrpc/com.atproto.sync.requestCrawl", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s: %d %s", ErrCrawl, name, resp.StatusCode, msg)
	}
	return nil
}

// RequestCrawlAll asks the relay to crawl every host of the fleet.
func (f *Fleet) RequestCrawlAll(ctx context.Context, relayURL string) error {
	for _, h := range f.hosts {
		if err := h.RequestCrawl(ctx, relayURL); err != nil {
			return err
		}
	}
	return nil
}
