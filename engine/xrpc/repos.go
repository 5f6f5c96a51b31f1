package xrpc

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/syntax"
	"github.com/atrelay/relay/engine/httpjson"
	"github.com/atrelay/relay/engine/identity"
	"github.com/atrelay/relay/store"
)

// maxScanPages bounds the work of one listRepos call: accounts without a
// commit are skipped, so a page may need several store reads to fill, but
// never more than this many pages' worth. A short page then still carries
// a cursor, and the client simply asks again.
const maxScanPages = 8

// repoView is the API's single view of an account's two statuses (see the
// package doc): active, and the status the API reports when inactive.
func repoView(a *store.Account) (active bool, status store.AccountStatus) {
	switch {
	case a.Active():
		return true, store.StatusActive
	case a.LocalStatus == store.LocalTakendown || a.LocalStatus == store.LocalSuspended:
		return false, a.LocalStatus.Reported()
	case a.UpstreamStatus != store.StatusActive:
		return false, a.UpstreamStatus
	}
	return false, a.LocalStatus.Reported()
}

// statusField is the lexicon's optional status: sent only when inactive
// (digest §17.10).
func statusField(active bool, status store.AccountStatus) string {
	if active {
		return ""
	}
	return status.String()
}

// repoItem is com.atproto.sync.listRepos#repo.
type repoItem struct {
	DID    string `json:"did"`
	Head   string `json:"head"`
	Rev    string `json:"rev"`
	Active bool   `json:"active"`
	Status string `json:"status,omitempty"`
}

type listReposOutput struct {
	Cursor string     `json:"cursor,omitempty"`
	Repos  []repoItem `json:"repos"`
}

func (s *Server) listRepos(w http.ResponseWriter, r *http.Request) int {
	limit, ok := parseLimit(r, defaultReposLimit)
	if !ok {
		return httpjson.Error(w, http.StatusBadRequest, "InvalidRequest", "limit must be an integer from 1 to 1000")
	}
	after, ok := parseCursor(r)
	if !ok {
		return httpjson.Error(w, http.StatusBadRequest, "InvalidRequest", "invalid cursor")
	}
	out := listReposOutput{Repos: make([]repoItem, 0, limit)}
	more := false
	for range maxScanPages {
		want := limit - len(out.Repos)
		page, err := s.st.ListAccounts(after, want)
		if err != nil {
			return s.internalError(w, r, err)
		}
		for i := range page {
			a := &page[i]
			after = a.UID
			if len(a.Rev) == 0 || len(a.Commit) == 0 {
				continue // no commit seen yet: nothing to list
			}
			active, status := repoView(a)
			out.Repos = append(out.Repos, repoItem{
				DID: string(a.DID), Head: cid.CID(a.Commit).String(), Rev: string(a.Rev),
				Active: active, Status: statusField(active, status),
			})
		}
		// A full store page means more accounts may follow.
		more = len(page) == want
		if !more || len(out.Repos) == limit {
			break
		}
	}
	if more {
		out.Cursor = strconv.FormatUint(after, 10)
	}
	return httpjson.Write(w, http.StatusOK, out)
}

// account parses the did parameter and loads the account. On failure it has
// written the error response and returns ok false with the status code.
func (s *Server) account(w http.ResponseWriter, r *http.Request, a *store.Account) (code int, ok bool) {
	did := r.URL.Query().Get("did")
	if did == "" {
		return httpjson.Error(w, http.StatusBadRequest, "InvalidRequest", "did parameter required"), false
	}
	if _, err := syntax.ParseDID(did); err != nil {
		return httpjson.Error(w, http.StatusBadRequest, "InvalidRequest", "invalid did: "+err.Error()), false
	}
	found, err := s.st.GetAccount([]byte(did), a)
	if err != nil {
		return s.internalError(w, r, err), false
	}
	if !found {
		return httpjson.Error(w, http.StatusNotFound, "RepoNotFound", "repo not found: "+did), false
	}
	return 0, true
}

// inactiveError answers for an account whose commits are not served: the
// lexicon names takedown, suspension and deactivation; a deleted account
// is not found; other inactive states (throttled, desynchronized upstream)
// get RepoInactive like the reference relay, for want of a lexicon name.
func inactiveError(w http.ResponseWriter, status store.AccountStatus) int {
	switch status {
	case store.StatusTakendown:
		return httpjson.Error(w, http.StatusForbidden, "RepoTakendown", "repo has been taken down")
	case store.StatusSuspended:
		return httpjson.Error(w, http.StatusForbidden, "RepoSuspended", "repo is suspended")
	case store.StatusDeactivated:
		return httpjson.Error(w, http.StatusForbidden, "RepoDeactivated", "repo is deactivated")
	case store.StatusDeleted:
		return httpjson.Error(w, http.StatusNotFound, "RepoNotFound", "repo has been deleted")
	}
	return httpjson.Error(w, http.StatusForbidden, "RepoInactive", "repo is not active ("+status.String()+")")
}

type latestCommitOutput struct {
	CID string `json:"cid"`
	Rev string `json:"rev"`
}

func (s *Server) getLatestCommit(w http.ResponseWriter, r *http.Request) int {
	var a store.Account
	if code, ok := s.account(w, r, &a); !ok {
		return code
	}
	if active, status := repoView(&a); !active {
		return inactiveError(w, status)
	}
	if len(a.Rev) == 0 || len(a.Commit) == 0 {
		return httpjson.Error(w, http.StatusNotFound, "RepoNotSynchronized", "no commit seen for this repo yet")
	}
	return httpjson.Write(w, http.StatusOK, latestCommitOutput{CID: cid.CID(a.Commit).String(), Rev: string(a.Rev)})
}

type repoStatusOutput struct {
	DID    string `json:"did"`
	Active bool   `json:"active"`
	Status string `json:"status,omitempty"`
	Rev    string `json:"rev,omitempty"`
}

func (s *Server) getRepoStatus(w http.ResponseWriter, r *http.Request) int {
	var a store.Account
	if code, ok := s.account(w, r, &a); !ok {
		return code
	}
	active, status := repoView(&a)
	return httpjson.Write(w, http.StatusOK, repoStatusOutput{DID: string(a.DID), Active: active, Status: statusField(active, status), Rev: string(a.Rev)})
}

// getRepo redirects to the account's PDS: a relay keeps no repositories.
// It answers from what the relay already holds and never resolves a DID,
// so a public request costs no request to the PLC directory or a did:web
// host: the PDS of the cached DID document if there is one, else the host
// the account's events are accepted from (checked against its document
// when they arrived, digest §8.3). An unknown DID, a deleted account and a
// cached tombstone are RepoNotFound.
func (s *Server) getRepo(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	if since := q.Get("since"); since != "" {
		if _, err := syntax.ParseTID(since); err != nil {
			return httpjson.Error(w, http.StatusBadRequest, "InvalidRequest", "invalid since: "+err.Error())
		}
	}
	var a store.Account
	if code, ok := s.account(w, r, &a); !ok {
		return code
	}
	switch {
	case a.LocalStatus == store.LocalTakendown || a.LocalStatus == store.LocalSuspended:
		return inactiveError(w, a.LocalStatus.Reported())
	case a.UpstreamStatus == store.StatusDeleted:
		return inactiveError(w, store.StatusDeleted)
	}
	did := string(a.DID)
	host := ""
	id, cached, err := s.res.Cached(did)
	switch {
	case cached && err == nil:
		host = id.PDSHost
	case cached && permanentResolveFailure(err):
		return httpjson.Error(w, http.StatusNotFound, "RepoNotFound", "no PDS for "+did)
	}
	if host == "" {
		if h, ok := s.st.GetHost(a.Host); ok {
			host = h.Hostname
		}
	}
	if host == "" {
		return httpjson.Error(w, http.StatusNotFound, "RepoNotFound", "no PDS known for "+did)
	}
	target := url.URL{
		Scheme:   pdsScheme(host),
		Host:     host,
		Path:     "/xrpc/com.atproto.sync.getRepo",
		RawQuery: q.Encode(),
	}
	w.Header().Set("Location", target.String())
	w.WriteHeader(http.StatusFound)
	return http.StatusFound
}

// permanentResolveFailure reports whether a cached failure means the DID
// has no usable PDS (as opposed to the resolver having been unable to ask).
func permanentResolveFailure(err error) bool {
	return errors.Is(err, identity.ErrNotFound) || errors.Is(err, identity.ErrNoPDS) ||
		errors.Is(err, identity.ErrBadPDS) || errors.Is(err, identity.ErrBadDID) ||
		errors.Is(err, identity.ErrUnsupportedMethod)
}

// pdsScheme is https except for plaintext development hosts
// (syntax.PlaintextHost: localhost and loopback addresses).
func pdsScheme(host string) string {
	if syntax.PlaintextHost(host) {
		return "http"
	}
	return "https"
}
