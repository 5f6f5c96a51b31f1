package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// NewHost describes a host to create.
type NewHost struct {
	Hostname     string // normalized by the caller (spec §14.2)
	Status       HostStatus
	Trusted      bool
	AccountLimit uint64
}

// CreateHost adds a host, assigning the next host id, and returns its
// record. It fails with ErrHostExists if the hostname is known. Serializes
// with event writes.
func (s *Store) CreateHost(n NewHost) (Host, error) {
	if n.Hostname == "" || len(n.Hostname) > MaxHostnameBytes {
		return Host{}, fmt.Errorf("%w: hostname of %d bytes", ErrTooLong, len(n.Hostname))
	}
	if !n.Status.valid() {
		return Host{}, fmt.Errorf("%w: host status %d", ErrBadStatus, n.Status)
	}
	s.w.Lock()
	defer s.w.Unlock()
	if err := s.checkWritableLocked(); err != nil {
		return Host{}, err
	}
	s.mu.RLock()
	_, exists := s.mu.byName[n.Hostname]
	s.mu.RUnlock()
	if exists {
		return Host{}, fmt.Errorf("%w: %s", ErrHostExists, n.Hostname)
	}
	id := s.w.lastHID + 1
	h := Host{
		ID: id, Hostname: n.Hostname, Status: n.Status, Trusted: n.Trusted,
		AccountLimit: n.AccountLimit, FirstSeenMilli: s.opts.Now().UnixMilli(),
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(appendHostKey(nil, id), appendHostValue(nil, &h), nil)
	_ = b.Set(appendBytesKey(nil, prefixHostName, []byte(n.Hostname)), binary.BigEndian.AppendUint32(nil, uint32(id)), nil)
	_ = b.Set(keyLastHID, binary.BigEndian.AppendUint32(nil, uint32(id)), nil)
	if err := s.commitLocked(b); err != nil {
		return Host{}, err
	}
	s.w.lastHID = id
	s.mu.Lock()
	s.mu.hosts[id] = h
	s.mu.byName[h.Hostname] = id
	s.mu.topHost = max(s.mu.topHost, id)
	s.mu.Unlock()
	return h, nil
}

// UpdateHost applies fn to a copy of host id's record and stores the
// result: status, trust, limit, cursor resets, last connect and last error.
// The id, hostname, account count and first-seen time are the store's and
// are restored after fn. Serializes with event writes.
func (s *Store) UpdateHost(id HostID, fn func(h *Host)) (Host, error) {
	s.w.Lock()
	defer s.w.Unlock()
	if err := s.checkWritableLocked(); err != nil {
		return Host{}, err
	}
	s.mu.RLock()
	old, ok := s.mu.hosts[id]
	s.mu.RUnlock()
	if !ok {
		return Host{}, fmt.Errorf("%w: id %d", ErrNoHost, id)
	}
	h := old
	fn(&h)
	h.ID, h.Hostname, h.AccountCount, h.FirstSeenMilli = old.ID, old.Hostname, old.AccountCount, old.FirstSeenMilli
	if !h.Status.valid() {
		return Host{}, fmt.Errorf("%w: host status %d", ErrBadStatus, h.Status)
	}
	if len(h.LastError) > MaxErrorBytes {
		h.LastError = h.LastError[:MaxErrorBytes]
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(appendHostKey(nil, id), appendHostValue(nil, &h), nil)
	if err := s.commitLocked(b); err != nil {
		return Host{}, err
	}
	s.mu.Lock()
	s.mu.hosts[id] = h
	s.mu.Unlock()
	return h, nil
}

// GetHost returns host id's record. Safe for concurrent use.
func (s *Store) GetHost(id HostID) (Host, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h, ok := s.mu.hosts[id]
	return h, ok
}

// HostByName returns the record of the host with that hostname. Safe for
// concurrent use.
func (s *Store) HostByName(hostname string) (Host, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.mu.byName[hostname]
	if !ok {
		return Host{}, false
	}
	return s.mu.hosts[id], true
}

// ListHosts returns up to limit hosts with id above after, in id (first
// seen) order: the listHosts paging order. It costs the page and the ids
// missing in it (none: ids are dense), not the whole table. Safe for
// concurrent use.
func (s *Store) ListHosts(after HostID, limit int) []Host {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Host, 0, max(0, min(limit, len(s.mu.hosts))))
	for id := after + 1; id > after && id <= s.mu.topHost && len(out) < limit; id++ {
		if h, ok := s.mu.hosts[id]; ok {
			out = append(out, h)
		}
	}
	return out
}

// BanDomain adds domain (a hostname or a parent domain) to the ban list.
// Serializes with event writes.
func (s *Store) BanDomain(domain string) error {
	return s.setBan(domain, true)
}

// UnbanDomain removes domain from the ban list. Serializes with event writes.
func (s *Store) UnbanDomain(domain string) error {
	return s.setBan(domain, false)
}

func (s *Store) setBan(domain string, ban bool) error {
	domain = strings.ToLower(domain)
	if domain == "" || len(domain) > MaxDomainBytes {
		return fmt.Errorf("%w: domain of %d bytes", ErrTooLong, len(domain))
	}
	s.w.Lock()
	defer s.w.Unlock()
	if err := s.checkWritableLocked(); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	key := appendBytesKey(nil, prefixBan, []byte(domain))
	if ban {
		_ = b.Set(key, nil, nil)
	} else {
		_ = b.Delete(key, nil)
	}
	if err := s.commitLocked(b); err != nil {
		return err
	}
	s.mu.Lock()
	if ban {
		s.mu.bans[domain] = struct{}{}
	} else {
		delete(s.mu.bans, domain)
	}
	s.mu.Unlock()
	return nil
}

// IsBanned reports whether hostname or any parent domain of it is banned
// (spec §14.3 step 2). Comparison ignores case. Safe for concurrent use.
func (s *Store) IsBanned(hostname string) bool {
	hostname = strings.ToLower(hostname)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for name := hostname; name != ""; {
		if _, ok := s.mu.bans[name]; ok {
			return true
		}
		dot := strings.IndexByte(name, '.')
		if dot < 0 {
			break
		}
		name = name[dot+1:]
	}
	return false
}

// Bans returns the banned domains, sorted. Safe for concurrent use.
func (s *Store) Bans() []string {
	s.mu.RLock()
	out := make([]string, 0, len(s.mu.bans))
	for d := range s.mu.bans {
		out = append(out, d)
	}
	s.mu.RUnlock()
	slices.Sort(out)
	return out
}

// CrawlDay is the public requestCrawl budget's counter: how many new hosts
// requestCrawl added on one UTC day (meta 'c').
type CrawlDay struct {
	Day   uint32 // days since 1970-01-01 UTC
	Count uint32 // hosts added on Day
}

// CrawlDay returns the persisted requestCrawl counter; the zero value when
// none was ever written. Safe for concurrent use.
func (s *Store) CrawlDay() (CrawlDay, error) {
	if s.closed.Load() {
		return CrawlDay{}, ErrClosed
	}
	v, closer, err := s.db.Get(keyCrawlDay)
	if errors.Is(err, pebble.ErrNotFound) {
		return CrawlDay{}, nil
	}
	if err != nil {
		return CrawlDay{}, fmt.Errorf("store: crawl day: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return CrawlDay{}, fmt.Errorf("%w: meta %x has %d bytes", ErrCorrupt, keyCrawlDay, len(v))
	}
	return CrawlDay{Day: binary.BigEndian.Uint32(v), Count: binary.BigEndian.Uint32(v[4:])}, nil
}

// SetCrawlDay persists the requestCrawl counter; it is durable when
// SetCrawlDay returns (under SyncEveryBatch). The caller serializes its own
// read-modify-write. Serializes with event writes.
func (s *Store) SetCrawlDay(c CrawlDay) error {
	s.w.Lock()
	defer s.w.Unlock()
	if err := s.checkWritableLocked(); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	v := binary.BigEndian.AppendUint32(make([]byte, 0, 8), c.Day)
	_ = b.Set(keyCrawlDay, binary.BigEndian.AppendUint32(v, c.Count), nil)
	return s.commitLocked(b)
}
