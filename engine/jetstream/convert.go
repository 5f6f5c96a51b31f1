package jetstream

import (
	"bytes"
	"strconv"

	"github.com/atrelay/relay/engine/atproto/car"
	"github.com/atrelay/relay/engine/atproto/event"

	"github.com/atrelay/relay/engine/label"
)

// evKind is the kind of a Jetstream event; its String is the JSON "kind".
type evKind uint8

// The Jetstream event kinds. A relay #sync, #info or unknown frame yields no
// Jetstream event, as in Jetstream.
const (
	kindCommit evKind = iota + 1
	kindIdentity
	kindAccount
)

// String returns "commit", "identity" or "account".
func (k evKind) String() string {
	switch k {
	case kindCommit:
		return "commit"
	case kindIdentity:
		return "identity"
	case kindAccount:
		return "account"
	}
	return "unknown"
}

// skip is why a commit op yields no event although it was stamped: a
// closed set whose String is the reason label of
// relay_jetstream_ops_skipped_total.
type skip uint8

const (
	skipNone      skip = iota
	skipNoCID          // create or update without a record CID
	skipBadCAR         // the commit's blocks are not a readable CAR
	skipNoBlock        // the record block is not in the commit's CAR
	skipCIDMatch       // the record block does not hash to the op's CID
	skipBadRecord      // the record has no JSON form in the data model
	numSkips
)

var skipNames = [numSkips]string{
	skipNone:      "none",
	skipNoCID:     "no_cid",
	skipBadCAR:    "bad_car",
	skipNoBlock:   "no_block",
	skipCIDMatch:  "cid_mismatch",
	skipBadRecord: "bad_record",
}

// String returns the skip's metric label.
func (s skip) String() string { return label.Of(skipNames[:], s) }

// candidate is one Jetstream event of the relay event a converter holds,
// before encoding: what filters need, and where its data is in the frame.
type candidate struct {
	seq        uint64
	timeUS     int64
	kind       evKind
	op         int    // index into the commit's ops (kindCommit)
	operation  string // "create", "update" or "delete" (kindCommit)
	collection []byte // view into the frame (kindCommit)
	rkey       []byte // view into the frame (kindCommit)
}

// stamper assigns time_us values. Jetstream stamps each of its events with
// a microsecond clock that never repeats; this relay derives the stamp from
// the event's commit time in the log so that a replay computes the same
// stamps as the live stream did: the first Jetstream event of each second
// gets its commit millisecond × 1000, every later one max(its commit
// millisecond × 1000, previous stamp + 1), capped at the second's last
// microsecond. Stamps therefore rise strictly (unless one second holds more
// than a million events, when the cap repeats) and depend only on the
// events of their own second, which the log's time index finds.
type stamper struct {
	sec     int64 // Unix second of the last stamp
	last    int64 // the last stamp
	started bool
}

// next returns the stamp of the next Jetstream event committed at
// unixMilli.
func (s *stamper) next(unixMilli int64) int64 {
	t := unixMilli * 1000
	sec := floorDiv(t, 1e6)
	if s.started && t <= s.last {
		// Same second (or, if the log's clock ever stepped back, the
		// second already stamped): stay strictly after the last stamp.
		sec = s.sec
		t = min(s.last+1, sec*1e6+999_999)
	}
	s.sec, s.last, s.started = sec, t, true
	return t
}

// reset forgets the stamps, for a scan that starts at a second's first
// event.
func (s *stamper) reset() { *s = stamper{} }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// converter decodes relay frames and writes their Jetstream events. It is
// scratch for one goroutine (the pump, or one replaying subscriber); after
// load, its candidates and their views stay valid until the next load and
// only while the frame passed to load is unchanged.
type converter struct {
	dec   event.Decoder
	msg   event.Message
	car   car.Reader
	carOK int8 // 0: not parsed yet for this event, 1: parsed, -1: failed
	rec   recordJSON
	clock stamper
	cands []candidate
}

// load decodes the relay event seq, committed at unixMilli, and stamps its
// Jetstream events into c.cands. A frame that does not decode yields no
// candidates and the decoder's error.
func (c *converter) load(seq uint64, unixMilli int64, frame []byte) error {
	clear(c.cands)
	c.cands = c.cands[:0]
	c.carOK = 0
	if err := c.dec.Decode(frame, &c.msg); err != nil {
		return err
	}
	switch c.msg.Kind {
	case event.KindCommit:
		cm := &c.msg.Commit
		if cm.TooBig {
			// Jetstream drops tooBig commits: their blocks are incomplete.
			return nil
		}
		for i := range cm.Ops {
			o := &cm.Ops[i]
			var operation string
			switch string(o.Action) {
			case "create":
				operation = "create"
			case "update":
				operation = "update"
			case "delete":
				operation = "delete"
			default:
				continue
			}
			slash := bytes.IndexByte(o.Path, '/')
			if slash < 0 {
				continue
			}
			c.cands = append(c.cands, candidate{
				seq: seq, timeUS: c.clock.next(unixMilli), kind: kindCommit, op: i,
				operation: operation, collection: o.Path[:slash], rkey: o.Path[slash+1:],
			})
		}
	case event.KindIdentity:
		c.cands = append(c.cands, candidate{seq: seq, timeUS: c.clock.next(unixMilli), kind: kindIdentity})
	case event.KindAccount:
		c.cands = append(c.cands, candidate{seq: seq, timeUS: c.clock.next(unixMilli), kind: kindAccount})
	}
	return nil
}

// did returns the account DID of the loaded event (a view into the frame).
func (c *converter) did() []byte {
	switch c.msg.Kind {
	case event.KindCommit:
		return c.msg.Commit.Repo
	case event.KindIdentity:
		return c.msg.Identity.DID
	case event.KindAccount:
		return c.msg.Account.DID
	}
	return nil
}

// appendJSON appends the JSON of candidate i to dst. A commit op whose
// record cannot be shown returns dst unchanged and why.
//
// Field order follows Jetstream's models.Event (did, time_us, kind, then
// the kind's object); the identity and account objects keep the field order
// of indigo's SyncSubscribeRepos_Identity and _Account, which Jetstream
// embeds.
func (c *converter) appendJSON(dst []byte, i int) ([]byte, skip) {
	cd := &c.cands[i]
	base := len(dst)
	dst = append(dst, `{"did":`...)
	dst = appendJSONString(dst, c.did())
	dst = append(dst, `,"time_us":`...)
	dst = strconv.AppendInt(dst, cd.timeUS, 10)
	switch cd.kind {
	case kindCommit:
		cm := &c.msg.Commit
		o := &cm.Ops[cd.op]
		dst = append(dst, `,"kind":"commit","commit":{"rev":`...)
		dst = appendJSONString(dst, cm.Rev)
		dst = append(dst, `,"operation":"`...)
		dst = append(dst, cd.operation...)
		dst = append(dst, `","collection":`...)
		dst = appendJSONString(dst, cd.collection)
		dst = append(dst, `,"rkey":`...)
		dst = appendJSONString(dst, cd.rkey)
		if cd.operation != "delete" {
			rec, why := c.recordBlock(o)
			if why != skipNone {
				return dst[:base], why
			}
			dst = append(dst, `,"record":`...)
			var err error
			if dst, err = c.rec.appendRecord(dst, rec); err != nil {
				return dst[:base], skipBadRecord
			}
			dst = append(dst, `,"cid":"`...)
			dst = o.CID.AppendString(dst)
			dst = append(dst, '"')
		}
		dst = append(dst, '}')
	case kindIdentity:
		id := &c.msg.Identity
		dst = append(dst, `,"kind":"identity","identity":{"did":`...)
		dst = appendJSONString(dst, id.DID)
		if id.Handle != nil {
			dst = append(dst, `,"handle":`...)
			dst = appendJSONString(dst, id.Handle)
		}
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendInt(dst, id.Seq, 10)
		dst = append(dst, `,"time":`...)
		dst = appendJSONString(dst, id.Time)
		dst = append(dst, '}')
	case kindAccount:
		a := &c.msg.Account
		dst = append(dst, `,"kind":"account","account":{"active":`...)
		dst = strconv.AppendBool(dst, a.Active)
		dst = append(dst, `,"did":`...)
		dst = appendJSONString(dst, a.DID)
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendInt(dst, a.Seq, 10)
		if a.Status != nil {
			dst = append(dst, `,"status":`...)
			dst = appendJSONString(dst, a.Status)
		}
		dst = append(dst, `,"time":`...)
		dst = appendJSONString(dst, a.Time)
		dst = append(dst, '}')
	}
	return append(dst, '}'), skipNone
}

// recordBlock returns the record block of a create or update op from the
// commit's CAR slice, checked against the op's CID (as Jetstream checks the
// record it reads against the op). The CAR is parsed once per event.
func (c *converter) recordBlock(o *event.Op) ([]byte, skip) {
	if !o.CID.Defined() {
		return nil, skipNoCID
	}
	if c.carOK == 0 {
		c.carOK = 1
		if err := c.car.Reset(c.msg.Commit.Blocks, car.Options{}); err != nil {
			c.carOK = -1
		}
	}
	if c.carOK < 0 {
		return nil, skipBadCAR
	}
	b, ok := c.car.Get(o.CID)
	if !ok {
		return nil, skipNoBlock
	}
	if !o.CID.Verify(b) {
		return nil, skipCIDMatch
	}
	return b, skipNone
}
