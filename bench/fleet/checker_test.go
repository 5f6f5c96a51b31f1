package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/event"
	"github.com/atrelay/relay/engine/atproto/mst"
	"github.com/atrelay/relay/internal/repo"
)

// Outcomes the checker counts, one per verdict.
const (
	outCommitOK  = "commit-ok"
	outSyncOK    = "sync-ok"
	outIdentity  = "identity"
	outAccount   = "account"
	outMalformed = "malformed"
	outOversize  = "oversize"
	outSeqBack   = "seq-back"
	outSigFail   = "sig-fail"
	outInvFail   = "inversion-fail"
	outBadCAR    = "bad-car"
	outForeign   = "foreign"
	outStaleRev  = "stale-rev"
	outChain     = "chain-break"
	outInfo      = "info"
)

// checker is a test consumer of one host's firehose that verifies every
// commit the way a sync-1.1 relay does: signature against the PLC key,
// inversion to prevData, since/prevData continuity, host authority.
type checker struct {
	t      *testing.T
	host   *Host
	plcURL string
	conn   net.Conn
	rw     struct {
		io.Reader
		io.Writer
	}

	dec   event.Decoder
	msg   event.Message
	rd    car.Reader
	inv   mst.Inverter
	mops  []mst.Op
	keys  map[string]atcrypto.PublicKey
	pds   map[string]string
	state map[string]acctHead
	last  int64 // last seq seen on this connection
	got   map[string]int
}

type acctHead struct {
	rev  string
	data cid.CID
}

func newChecker(t *testing.T, h *Host, plcURL string) *checker {
	return &checker{t: t, host: h, plcURL: plcURL, keys: map[string]atcrypto.PublicKey{},
		pds: map[string]string{}, state: map[string]acctHead{}, got: map[string]int{}}
}

// dial connects with the given cursor ("" for none).
func (c *checker) dial(cursor string) {
	c.t.Helper()
	u := "ws://" + c.host.Addr + "/xrpc/com.atproto.sync.subscribeRepos"
	if cursor != "" {
		u += "?cursor=" + cursor
	}
	conn, br, _, err := ws.Dial(context.Background(), u)
	if err != nil {
		c.t.Fatalf("dial %s: %v", u, err)
	}
	c.conn, c.last = conn, 0
	// Frames sent right after the handshake may sit in the dialer's buffer.
	c.rw = struct {
		io.Reader
		io.Writer
	}{conn, conn}
	if br != nil {
		c.rw.Reader = io.MultiReader(br, conn)
	}
}

func (c *checker) close() {
	if c.conn != nil {
		c.conn.Close()
	}
}

// readUntil reads and checks frames until one with seq ≥ target arrives.
// An abrupt close reconnects with the last seq as cursor.
func (c *checker) readUntil(target int64) {
	c.t.Helper()
	for c.last < target {
		c.conn.SetReadDeadline(time.Now().Add(20 * time.Second)) // hang guard only
		data, _, err := wsutil.ReadServerData(c.rw)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatalf("%s: no frame while waiting for seq %d (at %d)", c.host.Name, target, c.last)
			}
			c.t.Logf("%s: reconnect after %v", c.host.Name, err)
			c.got["reconnect"]++
			c.conn.Close()
			c.dial(strconv.FormatInt(c.last, 10))
			continue
		}
		c.frame(data)
	}
}

func (c *checker) frame(b []byte) {
	if len(b) > event.DefaultMaxFrameBytes {
		c.got[outOversize]++
		return
	}
	if err := c.dec.Decode(b, &c.msg); err != nil {
		c.got[outMalformed]++
		return
	}
	seq, ok := c.msg.Seq()
	if !ok {
		c.got[outInfo]++
		return
	}
	if seq <= c.last {
		c.got[outSeqBack]++
		return
	}
	c.last = seq
	switch c.msg.Kind {
	case event.KindCommit:
		c.got[c.commit(&c.msg.Commit)]++
	case event.KindSync:
		c.got[c.sync(&c.msg.Sync)]++
	case event.KindIdentity:
		delete(c.keys, string(c.msg.Identity.DID))
		delete(c.pds, string(c.msg.Identity.DID))
		c.got[outIdentity]++
	case event.KindAccount:
		c.got[outAccount]++
	}
}

// resolve fetches did's key and PDS host from the fake PLC.
func (c *checker) resolve(did string) (atcrypto.PublicKey, string) {
	if k, ok := c.keys[did]; ok {
		return k, c.pds[did]
	}
	resp, err := http.Get(c.plcURL + "/" + did)
	if err != nil {
		c.t.Fatalf("resolve %s: %v", did, err)
	}
	defer resp.Body.Close()
	var doc struct {
		VM []struct {
			ID, Type, PublicKeyMultibase string
		} `json:"verificationMethod"`
		Service []struct {
			ID, ServiceEndpoint string
		} `json:"service"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || len(doc.VM) == 0 || len(doc.Service) == 0 {
		c.t.Fatalf("resolve %s: status %d, %v", did, resp.StatusCode, err)
	}
	k, err := atcrypto.ParseMultibase(doc.VM[0].Type, doc.VM[0].PublicKeyMultibase)
	if err != nil {
		c.t.Fatalf("resolve %s: key: %v", did, err)
	}
	c.keys[did], c.pds[did] = k, strings.TrimPrefix(doc.Service[0].ServiceEndpoint, "http://")
	return k, c.pds[did]
}

// commitBlock finds, parses and signature-checks the commit of a CAR.
// It returns the MST root or an outcome naming the failure.
func (c *checker) commitBlock(did, rev []byte, root cid.CID, blocks []byte) (cid.CID, string) {
	if err := c.rd.Reset(blocks, car.Options{VerifyHashes: true}); err != nil {
		return nil, outBadCAR
	}
	if root == nil { // #sync: the CAR root is the commit
		root = c.rd.Root()
	}
	if !c.rd.Root().Equal(root) {
		return nil, outBadCAR
	}
	block, ok := c.rd.Get(root)
	if !ok {
		return nil, outBadCAR
	}
	var obj struct {
		DID     string   `cbor:"did"`
		Rev     string   `cbor:"rev"`
		Sig     []byte   `cbor:"sig"`
		Data    cbor.Tag `cbor:"data"`
		Version int      `cbor:"version"`
	}
	if err := cbor.Unmarshal(block, &obj); err != nil || obj.Version != 3 || obj.DID != string(did) || obj.Rev != string(rev) {
		return nil, outBadCAR
	}
	link, ok := obj.Data.Content.([]byte)
	if obj.Data.Number != 42 || !ok || len(link) < 2 {
		return nil, outBadCAR
	}
	data := cid.CID(link[1:])
	if !bytes.Equal(repo.AppendCommitObject(nil, did, rev, data, obj.Sig), block) {
		return nil, outBadCAR
	}
	key, pds := c.resolve(string(did))
	if pds != c.host.Name {
		return nil, outForeign
	}
	if key.Verify(repo.AppendCommitObject(nil, did, rev, data, nil), obj.Sig) != nil {
		// Re-resolve once, as a relay does (spec §12.2 step 9).
		delete(c.keys, string(did))
		if key, _ = c.resolve(string(did)); key.Verify(repo.AppendCommitObject(nil, did, rev, data, nil), obj.Sig) != nil {
			return nil, outSigFail
		}
	}
	return data.Clone(), ""
}

func (c *checker) commit(ev *event.Commit) string {
	data, bad := c.commitBlock(ev.Repo, ev.Rev, ev.Commit, ev.Blocks)
	if bad != "" {
		return bad
	}
	prev, known := c.state[string(ev.Repo)]
	if known && string(ev.Rev) <= prev.rev {
		return outStaleRev
	}
	if ev.PrevData != nil {
		c.mops = c.mops[:0]
		for _, op := range ev.Ops {
			a := map[string]mst.Action{"create": mst.ActionCreate, "update": mst.ActionUpdate, "delete": mst.ActionDelete}[string(op.Action)]
			c.mops = append(c.mops, mst.Op{Action: a, Path: op.Path, CID: op.CID, Prev: op.Prev})
		}
		if err := c.inv.Check(c.rd.Get, data, ev.PrevData, c.mops); err != nil {
			c.t.Logf("%s seq %d: inversion: %v", ev.Repo, ev.Seq, err)
			return outInvFail
		}
	}
	out := outCommitOK
	if known && (string(ev.Since) != prev.rev || !ev.PrevData.Equal(prev.data)) {
		c.got[outChain]++
	}
	c.state[string(ev.Repo)] = acctHead{rev: string(ev.Rev), data: data}
	return out
}

func (c *checker) sync(ev *event.Sync) string {
	data, bad := c.commitBlock(ev.DID, ev.Rev, nil, ev.Blocks)
	if bad != "" {
		return bad
	}
	if prev, ok := c.state[string(ev.DID)]; ok && string(ev.Rev) < prev.rev {
		return outStaleRev
	}
	c.state[string(ev.DID)] = acctHead{rev: string(ev.Rev), data: data}
	return outSyncOK
}

// want compares the checker's counts with the expected ones; outcomes not
// named must be zero (except the ok/neutral ones).
func (c *checker) want(exp map[string]int) {
	c.t.Helper()
	neutral := map[string]bool{outCommitOK: true, outSyncOK: true, outIdentity: true, outAccount: true, outInfo: true, "reconnect": true}
	for k, v := range c.got {
		if !neutral[k] && exp[k] != v {
			c.t.Errorf("%s: %s = %d, want %d (all: %v)", c.host.Name, k, v, exp[k], c.got)
		}
	}
	for k, v := range exp {
		if c.got[k] != v {
			c.t.Errorf("%s: %s = %d, want %d (all: %v)", c.host.Name, k, c.got[k], v, c.got)
		}
	}
}

func (c *checker) String() string { return fmt.Sprint(c.got) }

// readOne reads one data frame.
func readOne(c *checker) ([]byte, error) {
	data, _, err := wsutil.ReadServerData(c.rw)
	return data, err
}
