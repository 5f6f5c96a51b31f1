// Package plc is a fake PLC directory for tests and benchmarks: an HTTP
// server answering GET /{did} with DID documents (and did:web documents at
// /.well-known/did.json, chosen by the Host header), with key rotation,
// PDS migration, tombstones, latency and failure injection.
//
// Documents are rendered in the shape the reference PLC server returns
// (spec §8.1, §8.2): "@context", "id", "alsoKnownAs" ["at://<handle>"],
// one "verificationMethod" with relative id "#atproto", and one "service"
// with id "#atproto_pds" of type AtprotoPersonalDataServer. Unknown DIDs get
// 404 "DID not registered", tombstoned DIDs 404 "DID not available".
//
// By default every request is answered at once. SetBehaviour makes the
// directory behave like the real one under load (Behaviour): a lognormal
// latency (e.g. p50 80 ms, p99 400 ms), a share of 500s, a share of
// requests never answered, and a token-bucket rate limit answered with
// 429. Its random draws come from one seeded source, so a sequence of
// requests gets the same fates run after run.
//
// A Server is safe for concurrent use.
package plc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Key types a document's #atproto verification method may carry (spec §7.1).
const (
	// KeyTypeMultikey is the current form: publicKeyMultibase is a multikey.
	KeyTypeMultikey = "Multikey"
	// KeyTypeLegacySecp256k1 is the legacy form the reference PLC still
	// serves: publicKeyMultibase is z + base58btc of the uncompressed point.
	KeyTypeLegacySecp256k1 = "EcdsaSecp256k1VerificationKey2019"
	// KeyTypeLegacyP256 is the legacy P-256 form.
	KeyTypeLegacyP256 = "EcdsaSecp256r1VerificationKey2019"
)

// ContentType is what the reference PLC serves DID documents with.
const ContentType = "application/did+ld+json; charset=utf-8"

// Errors returned by Server methods.
var (
	// ErrUnknownDID: the DID was never Put.
	ErrUnknownDID = errors.New("plc: unknown DID")
	// ErrRawDocument: the DID holds a raw document that is not in the
	// standard shape, so it cannot be rotated or migrated.
	ErrRawDocument = errors.New("plc: raw document not in the standard shape")
	// ErrBadDocument: a snapshot document is not a DID document this package understands.
	ErrBadDocument = errors.New("plc: unsupported DID document")
)

// Doc describes one identity. When Raw is set it is served verbatim and the
// other fields are ignored.
type Doc struct {
	Handle string // without "at://"
	PDS    string // #atproto_pds serviceEndpoint, e.g. http://localhost:5201
	Key    string // publicKeyMultibase of #atproto
	// KeyType is the verification method type; empty means KeyTypeMultikey.
	KeyType string
	Raw     json.RawMessage
}

// document is the standard shape; its field order is the reference PLC's,
// so a snapshot document decoded and re-encoded keeps its key order.
type document struct {
	Context            []string             `json:"@context"`
	ID                 string               `json:"id"`
	AlsoKnownAs        []string             `json:"alsoKnownAs"`
	VerificationMethod []verificationMethod `json:"verificationMethod"`
	Service            []service            `json:"service"`
}

type verificationMethod struct {
	ID                 string `json:"id"`
	Type               string `json:"type"`
	Controller         string `json:"controller"`
	PublicKeyMultibase string `json:"publicKeyMultibase"`
}

type service struct {
	ID              string `json:"id"`
	Type            string `json:"type"`
	ServiceEndpoint string `json:"serviceEndpoint"`
}

func contextFor(keyType string) []string {
	c := []string{"https://www.w3.org/ns/did/v1"}
	switch keyType {
	case KeyTypeMultikey:
		c = append(c, "https://w3id.org/security/multikey/v1")
	case KeyTypeLegacySecp256k1:
		c = append(c, "https://w3id.org/security/suites/secp256k1-2019/v1")
	case KeyTypeLegacyP256:
		c = append(c, "https://w3id.org/security/suites/ecdsa-2019/v1")
	}
	return c
}

func render(did string, d Doc) *document {
	kt := d.KeyType
	if kt == "" {
		kt = KeyTypeMultikey
	}
	return &document{
		Context:            contextFor(kt),
		ID:                 did,
		AlsoKnownAs:        []string{"at://" + d.Handle},
		VerificationMethod: []verificationMethod{{ID: "#atproto", Type: kt, Controller: did, PublicKeyMultibase: d.Key}},
		Service:            []service{{ID: "#atproto_pds", Type: "AtprotoPersonalDataServer", ServiceEndpoint: d.PDS}},
	}
}

// Marshal returns the DID document JSON the server serves for did after
// Put(did, d) with d.Raw nil, for tools that store documents offline.
func Marshal(did string, d Doc) ([]byte, error) { return json.Marshal(render(did, d)) }

// entry is one DID's current state. Entries are replaced, never mutated,
// so a served body can be written without holding the lock.
type entry struct {
	doc        *document // nil for a raw document
	body       []byte    // the JSON served
	tombstoned bool
}

// Counters are the server's request counts since it was created.
type Counters struct {
	Requests    int64 // every request
	Served      int64 // 200 responses
	NotFound    int64 // 404: unknown or tombstoned
	Failures    int64 // injected 500s
	BadMethod   int64 // non-GET requests
	RateLimited int64 // 429s (Behaviour.RatePerSecond)
	TimedOut    int64 // requests held unanswered until the client left (Behaviour.TimeoutRate)
}

// Server is the fake directory. Create it with New.
type Server struct {
	mu       sync.Mutex // guards the fields below
	docs     map[string]*entry
	behave   Behaviour // validated
	limit    bucket
	failNext int
	rng      *rand.Rand

	// Test hooks, static after New: the clock of the rate limit, and the
	// wait before an answer (d < 0: until ctx ends), which reports
	// whether to answer.
	now  func() time.Time
	wait func(ctx context.Context, d time.Duration) bool

	// Counters, updated atomically by handlers.
	requests, served, notFound, failures, badMethod, limited, timedOut atomic.Int64

	// Set by Start, static afterwards.
	srv *http.Server
	ln  net.Listener
	url string
}

// New returns an empty directory; serve it with Start or use it as an
// http.Handler.
func New() *Server {
	return &Server{docs: map[string]*entry{}, rng: rand.New(rand.NewPCG(1, 1)), now: time.Now, wait: sleep}
}

// sleep waits d (d < 0: forever) or until ctx ends, and reports whether
// the wait completed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d < 0 {
		<-ctx.Done()
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Start listens on addr (empty means 127.0.0.1:0) and serves in the
// background until Close.
func (s *Server) Start(addr string) error {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return nil
}

// URL is the base URL clients resolve DIDs against (http://127.0.0.1:PORT).
// It is empty before Start.
func (s *Server) URL() string { return s.url }

// Close stops a started server.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Close()
}

// Put sets the document for did, replacing any earlier one (and undoing a tombstone).
func (s *Server) Put(did string, d Doc) error {
	e := &entry{}
	if d.Raw != nil {
		e.body = append([]byte(nil), d.Raw...)
		var doc document
		if strictDecode(d.Raw, &doc) == nil {
			e.doc = &doc
		}
	} else {
		e.doc = render(did, d)
		b, err := json.Marshal(e.doc) // the bytes of Marshal
		if err != nil {
			return err
		}
		e.body = b
	}
	s.mu.Lock()
	s.docs[did] = e
	s.mu.Unlock()
	return nil
}

func strictDecode(raw []byte, doc *document) error {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(doc); err != nil {
		return err
	}
	if len(doc.VerificationMethod) == 0 || len(doc.Service) == 0 {
		return errors.New("no verification method or service")
	}
	return nil
}

// update applies f to a copy of did's standard document.
func (s *Server) update(did string, f func(*document) bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.docs[did]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownDID, did)
	}
	if e.doc == nil {
		return fmt.Errorf("%w: %s", ErrRawDocument, did)
	}
	doc := *e.doc
	doc.VerificationMethod = append([]verificationMethod(nil), doc.VerificationMethod...)
	doc.Service = append([]service(nil), doc.Service...)
	if !f(&doc) {
		return fmt.Errorf("%w: %s", ErrRawDocument, did)
	}
	b, err := json.Marshal(&doc)
	if err != nil {
		return err
	}
	s.docs[did] = &entry{doc: &doc, body: b, tombstoned: e.tombstoned}
	return nil
}

// RotateKey replaces the #atproto key of did, keeping its type.
func (s *Server) RotateKey(did, keyMultibase string) error {
	return s.update(did, func(d *document) bool {
		for i := range d.VerificationMethod {
			if strings.HasSuffix(d.VerificationMethod[i].ID, "#atproto") {
				d.VerificationMethod[i].PublicKeyMultibase = keyMultibase
				return true
			}
		}
		return false
	})
}

// Migrate points did's #atproto_pds service at a new endpoint.
func (s *Server) Migrate(did, pdsEndpoint string) error {
	return s.update(did, func(d *document) bool {
		return setPDS(d, pdsEndpoint)
	})
}

func setPDS(d *document, endpoint string) bool {
	for i := range d.Service {
		if strings.HasSuffix(d.Service[i].ID, "#atproto_pds") {
			d.Service[i].ServiceEndpoint = endpoint
			return true
		}
	}
	return false
}

// Tombstone makes did answer 404 "DID not available" until the next Put.
func (s *Server) Tombstone(did string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.docs[did]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownDID, did)
	}
	s.docs[did] = &entry{doc: e.doc, body: e.body, tombstoned: true}
	return nil
}

// LoadSnapshot puts every document of a capture's identity snapshot (DID →
// DID document JSON), passing each #atproto_pds endpoint through rewrite
// (nil keeps it) so it can point at a replay host's real address.
func (s *Server) LoadSnapshot(snap map[string]json.RawMessage, rewrite func(endpoint string) string) error {
	for did, raw := range snap {
		var doc document
		if err := strictDecode(raw, &doc); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrBadDocument, did, err)
		}
		if doc.ID != did {
			return fmt.Errorf("%w: %s: id is %q", ErrBadDocument, did, doc.ID)
		}
		if rewrite != nil {
			for i := range doc.Service {
				if strings.HasSuffix(doc.Service[i].ID, "#atproto_pds") {
					doc.Service[i].ServiceEndpoint = rewrite(doc.Service[i].ServiceEndpoint)
				}
			}
		}
		b, err := json.Marshal(&doc)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.docs[did] = &entry{doc: &doc, body: b}
		s.mu.Unlock()
	}
	return nil
}

// SetBehaviour replaces the latency, error, timeout and rate-limit model
// (see Behaviour); the rate-limit bucket starts full.
func (s *Server) SetBehaviour(b Behaviour) error {
	if err := b.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	s.behave, s.limit = b, bucket{}
	s.mu.Unlock()
	return nil
}

// Behaviour returns the model in force.
func (s *Server) Behaviour() Behaviour {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.behave
}

// SetLatency delays every response by d (a fixed Behaviour latency).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.behave.LatencyP50, s.behave.LatencyP99 = max(d, 0), max(d, 0)
	s.mu.Unlock()
}

// SetFailureRate makes each request fail with HTTP 500 with probability p
// (Behaviour.ErrorRate, clamped so it and the timeout rate stay in range).
func (s *Server) SetFailureRate(p float64) {
	s.mu.Lock()
	s.behave.ErrorRate = min(max(p, 0), 1-s.behave.TimeoutRate)
	s.mu.Unlock()
}

// FailNext makes the next n requests fail with HTTP 500 (before the failure rate applies).
func (s *Server) FailNext(n int) {
	s.mu.Lock()
	s.failNext = n
	s.mu.Unlock()
}

// Counters returns the request counts so far.
func (s *Server) Counters() Counters {
	return Counters{
		Requests:    s.requests.Load(),
		Served:      s.served.Load(),
		NotFound:    s.notFound.Load(),
		Failures:    s.failures.Load(),
		BadMethod:   s.badMethod.Load(),
		RateLimited: s.limited.Load(),
		TimedOut:    s.timedOut.Load(),
	}
}

// webDID is the did:web name for a Host header (the port's colon is percent-encoded).
func webDID(host string) string {
	return "did:web:" + strings.ReplaceAll(strings.ToLower(host), ":", "%3A")
}

// ServeHTTP answers GET /{did} and GET /.well-known/did.json.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.badMethod.Add(1)
		http.Error(w, `{"message":"method not allowed"}`, http.StatusMethodNotAllowed)
		return
	}
	var did string
	if r.URL.Path == "/.well-known/did.json" {
		did = webDID(r.Host)
	} else {
		did, _ = url.PathUnescape(strings.TrimPrefix(r.URL.Path, "/"))
	}
	// Every random draw happens here, under the lock, in request order.
	s.mu.Lock()
	b := &s.behave
	if b.RatePerSecond > 0 && !s.limit.take(s.now(), b.RatePerSecond, b.burst()) {
		s.mu.Unlock()
		s.limited.Add(1)
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"message":"rate limit exceeded"}`, http.StatusTooManyRequests)
		return
	}
	fail, hang := false, false
	if s.failNext > 0 {
		s.failNext--
		fail = true
	} else if b.ErrorRate > 0 || b.TimeoutRate > 0 {
		// One draw splits [0, 1) into error, timeout and normal answers.
		switch x := s.rng.Float64(); {
		case x < b.ErrorRate:
			fail = true
		case x < b.ErrorRate+b.TimeoutRate:
			hang = true
		}
	}
	delay := b.delay(s.rng)
	e := s.docs[did]
	s.mu.Unlock()

	if hang {
		s.wait(r.Context(), -1)
		s.timedOut.Add(1)
		return
	}
	if delay > 0 && !s.wait(r.Context(), delay) {
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	switch {
	case fail:
		s.failures.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"message":"injected failure"}`))
	case e == nil:
		s.notFound.Add(1)
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"message":"DID not registered: %s"}`, jsonSafe(did))
	case e.tombstoned:
		s.notFound.Add(1)
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"message":"DID not available: %s"}`, jsonSafe(did))
	default:
		s.served.Add(1)
		w.Header().Set("Content-Type", ContentType)
		w.Write(e.body)
	}
}

// jsonSafe strips what would break the hand-written JSON error bodies.
func jsonSafe(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}
