package event

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/atrelay/relay/engine/atproto/dagcbor"
)

// Decoder decodes frames into Messages. The zero value is ready to use with
// default Limits. A Decoder is per-worker scratch and must not be used by
// two goroutines at once.
type Decoder struct {
	// Limits bound every Decode; set before the first call. Zero fields
	// mean the defaults.
	Limits Limits

	// Owned by the goroutine calling Decode: the fxamacker mode, built on
	// first use, and the wire structs it fills, reused between frames.
	dm       cbor.DecMode
	hdr      headerWire
	commit   commitWire
	ops      []opWire
	sync     syncWire
	identity identityWire
	account  accountWire
	info     infoWire
	errFrame errorWire
}

// decMode is the fxamacker configuration: the §3.3 limits, no indefinite
// lengths, duplicate keys rejected (also unknown ones), case-sensitive field
// names. Tags are allowed at this level because dagcbor.Envelope, which runs
// first, has already rejected every tag but 42.
func decMode() (cbor.DecMode, error) {
	return cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   dagcbor.MaxDepth,
		MaxArrayElements:  dagcbor.MaxContainerLen,
		MaxMapPairs:       dagcbor.MaxContainerLen,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsAllowed,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
	}.DecMode()
}

// Decode parses one frame into m. On success m.Kind says which field of m
// holds the body; KindUnknown (nil error) means "skip this frame". Every
// error means the frame is malformed. Views in m alias frame (see the
// package doc).
func (d *Decoder) Decode(frame []byte, m *Message) error {
	m.reset()
	err := d.decode(frame, m)
	d.scrub()
	return err
}

// scrub drops the wire structs' views of the frame so the Decoder does not
// keep the last frame reachable.
func (d *Decoder) scrub() {
	d.hdr = headerWire{}
	d.commit = commitWire{}
	clear(d.ops)
	d.sync = syncWire{}
	d.identity = identityWire{}
	d.account = accountWire{}
	d.info = infoWire{}
	d.errFrame = errorWire{}
}

func (d *Decoder) decode(frame []byte, m *Message) error {
	lim := d.Limits.withDefaults()
	if len(frame) > lim.MaxFrameBytes {
		return ErrFrameTooLarge
	}
	if d.dm == nil {
		dm, err := decMode()
		if err != nil {
			return err
		}
		d.dm = dm
	}
	hn, err := dagcbor.Envelope(frame)
	if err != nil {
		return fmt.Errorf("%w: header: %w", ErrCBOR, err)
	}
	header, body := frame[:hn], frame[hn:]
	bn, err := dagcbor.Envelope(body)
	if err != nil {
		return fmt.Errorf("%w: body: %w", ErrCBOR, err)
	}
	if bn != len(body) {
		return ErrTrailing
	}
	if dagcbor.Major(header[0]>>5) != dagcbor.MajorMap {
		return ErrHeader
	}
	if dagcbor.Major(body[0]>>5) != dagcbor.MajorMap {
		return ErrBody
	}

	d.hdr = headerWire{}
	if err := d.dm.Unmarshal(header, &d.hdr); err != nil {
		return wrapDecodeErr(ErrHeader, err)
	}
	if d.hdr.Op.st != present {
		return ErrHeader
	}
	m.Op = d.hdr.Op.v
	switch d.hdr.T.st {
	case present:
		m.Type = d.hdr.T.v
	case absent:
	default:
		return ErrHeader
	}
	switch m.Op {
	case -1:
		m.Kind = KindError
		return d.decodeError(body, m)
	case 1:
	default:
		return nil // unknown op: skip
	}
	if m.Type == nil {
		return ErrHeader
	}
	switch string(m.Type) {
	case "#commit":
		m.Kind = KindCommit
		return d.decodeCommit(body, m, lim)
	case "#sync":
		m.Kind = KindSync
		return d.decodeSync(body, m, lim)
	case "#identity":
		m.Kind = KindIdentity
		return d.decodeIdentity(body, m)
	case "#account":
		m.Kind = KindAccount
		return d.decodeAccount(body, m)
	case "#info":
		m.Kind = KindInfo
		return d.decodeInfo(body, m)
	}
	return nil // unknown or legacy type: skip
}

// wrapDecodeErr classifies an fxamacker error.
func wrapDecodeErr(reason, err error) error {
	var dup *cbor.DupMapKeyError
	if errors.As(err, &dup) {
		return fmt.Errorf("%w: %v", ErrDupKey, err)
	}
	return fmt.Errorf("%w: %v", reason, err)
}

// checker collects the first field problem of one body.
type checker struct {
	kind Kind
	err  error
}

func (c *checker) fail(field string, reason error) {
	if c.err == nil {
		c.err = &FieldError{Kind: c.kind, Field: field, Err: reason}
	}
}

// required: the key must be present with the right type.
func (c *checker) required(field string, st state) {
	switch st {
	case absent:
		c.fail(field, ErrMissingField)
	case null, bad:
		c.fail(field, ErrFieldType)
	}
}

// nullable: the key must be present; null is allowed.
func (c *checker) nullable(field string, st state) {
	switch st {
	case absent:
		c.fail(field, ErrMissingField)
	case bad:
		c.fail(field, ErrFieldType)
	}
}

// optional: the key may be absent; null is not a value of the field.
func (c *checker) optional(field string, st state) {
	if st == null || st == bad {
		c.fail(field, ErrFieldType)
	}
}

func (d *Decoder) decodeCommit(body []byte, m *Message, lim Limits) error {
	w := &d.commit
	*w = commitWire{}
	if err := d.dm.Unmarshal(body, w); err != nil {
		return wrapDecodeErr(ErrBody, err)
	}
	ck := checker{kind: KindCommit}
	ck.required("seq", w.Seq.st)
	ck.required("repo", w.Repo.st)
	ck.required("commit", w.Commit.st)
	ck.required("rev", w.Rev.st)
	ck.nullable("since", w.Since.st)
	ck.required("blocks", w.Blocks.st)
	ck.required("ops", w.Ops.st)
	ck.optional("prevData", w.PrevData.st)
	if w.Blobs.st == bad {
		ck.fail("blobs", ErrFieldType)
	}
	ck.optional("tooBig", w.TooBig.st)
	ck.optional("rebase", w.Rebase.st)
	ck.required("time", w.Time.st)
	if ck.err != nil {
		return ck.err
	}
	if len(w.Blocks.v) > lim.MaxCommitBlocksBytes {
		return &FieldError{Kind: KindCommit, Field: "blocks", Err: ErrBlocksTooLarge}
	}
	if w.Ops.count > uint64(lim.MaxOps) {
		return &FieldError{Kind: KindCommit, Field: "ops", Err: ErrTooManyOps}
	}
	c := &m.Commit
	c.Seq = w.Seq.v
	c.Repo = w.Repo.v
	c.Commit = w.Commit.v
	c.Rev = w.Rev.v
	c.Since = w.Since.v
	c.Blocks = w.Blocks.v
	c.PrevData = w.PrevData.v
	c.TooBig = w.TooBig.v
	c.Rebase = w.Rebase.v
	c.Time = w.Time.v
	if err := d.decodeOps(w.Ops, c); err != nil {
		return err
	}
	return decodeBlobs(w.Blobs, c)
}

func (d *Decoder) decodeOps(f arrayField, c *Commit) error {
	n := int(f.count) // bounded by MaxOps
	if n == 0 {
		return nil
	}
	if cap(d.ops) < n {
		d.ops = make([]opWire, n)
	} else {
		d.ops = d.ops[:n]
		clear(d.ops)
	}
	if err := d.dm.Unmarshal(f.raw, &d.ops); err != nil {
		var dup *cbor.DupMapKeyError
		if errors.As(err, &dup) {
			return fmt.Errorf("%w: ops: %v", ErrDupKey, err)
		}
		return &FieldError{Kind: KindCommit, Field: "ops", Err: ErrFieldType}
	}
	for i := range d.ops {
		o := &d.ops[i]
		ck := checker{kind: KindCommit}
		ck.required("action", o.Action.st)
		ck.required("path", o.Path.st)
		ck.nullable("cid", o.CID.st)
		ck.optional("prev", o.Prev.st)
		if ck.err != nil {
			fe := ck.err.(*FieldError)
			fe.Field = fmt.Sprintf("ops[%d].%s", i, fe.Field)
			return fe
		}
		c.Ops = append(c.Ops, Op{Action: o.Action.v, Path: o.Path.v, CID: o.CID.v, Prev: o.Prev.v})
	}
	return nil
}

// decodeBlobs reads the deprecated blobs array (CID links) into c.Blobs.
func decodeBlobs(f arrayField, c *Commit) error {
	if f.st != present {
		return nil
	}
	_, _, n, _ := dagcbor.ReadHead(f.raw)
	b := f.raw[n:]
	for range f.count {
		link, ln, err := dagcbor.ReadCIDLink(b)
		if err != nil {
			return &FieldError{Kind: KindCommit, Field: "blobs", Err: ErrFieldType}
		}
		c.Blobs = append(c.Blobs, link)
		b = b[ln:]
	}
	return nil
}

func (d *Decoder) decodeSync(body []byte, m *Message, lim Limits) error {
	w := &d.sync
	*w = syncWire{}
	if err := d.dm.Unmarshal(body, w); err != nil {
		return wrapDecodeErr(ErrBody, err)
	}
	ck := checker{kind: KindSync}
	ck.required("seq", w.Seq.st)
	ck.required("did", w.DID.st)
	ck.required("rev", w.Rev.st)
	ck.required("blocks", w.Blocks.st)
	ck.required("time", w.Time.st)
	if ck.err != nil {
		return ck.err
	}
	if len(w.Blocks.v) > lim.MaxSyncBlocksBytes {
		return &FieldError{Kind: KindSync, Field: "blocks", Err: ErrBlocksTooLarge}
	}
	m.Sync = Sync{Seq: w.Seq.v, DID: w.DID.v, Rev: w.Rev.v, Blocks: w.Blocks.v, Time: w.Time.v}
	return nil
}

func (d *Decoder) decodeIdentity(body []byte, m *Message) error {
	w := &d.identity
	*w = identityWire{}
	if err := d.dm.Unmarshal(body, w); err != nil {
		return wrapDecodeErr(ErrBody, err)
	}
	ck := checker{kind: KindIdentity}
	ck.required("seq", w.Seq.st)
	ck.required("did", w.DID.st)
	ck.required("time", w.Time.st)
	ck.optional("handle", w.Handle.st)
	if ck.err != nil {
		return ck.err
	}
	m.Identity = Identity{Seq: w.Seq.v, DID: w.DID.v, Time: w.Time.v, Handle: w.Handle.v}
	return nil
}

func (d *Decoder) decodeAccount(body []byte, m *Message) error {
	w := &d.account
	*w = accountWire{}
	if err := d.dm.Unmarshal(body, w); err != nil {
		return wrapDecodeErr(ErrBody, err)
	}
	ck := checker{kind: KindAccount}
	ck.required("seq", w.Seq.st)
	ck.required("did", w.DID.st)
	ck.required("time", w.Time.st)
	ck.required("active", w.Active.st)
	ck.optional("status", w.Status.st)
	if ck.err != nil {
		return ck.err
	}
	m.Account = Account{Seq: w.Seq.v, DID: w.DID.v, Time: w.Time.v, Active: w.Active.v, Status: w.Status.v}
	return nil
}

func (d *Decoder) decodeInfo(body []byte, m *Message) error {
	w := &d.info
	*w = infoWire{}
	if err := d.dm.Unmarshal(body, w); err != nil {
		return wrapDecodeErr(ErrBody, err)
	}
	ck := checker{kind: KindInfo}
	ck.required("name", w.Name.st)
	ck.optional("message", w.Message.st)
	if ck.err != nil {
		return ck.err
	}
	m.Info = Info{Name: w.Name.v, Message: w.Message.v}
	return nil
}

func (d *Decoder) decodeError(body []byte, m *Message) error {
	w := &d.errFrame
	*w = errorWire{}
	if err := d.dm.Unmarshal(body, w); err != nil {
		return wrapDecodeErr(ErrBody, err)
	}
	ck := checker{kind: KindError}
	ck.required("error", w.Error.st)
	ck.optional("message", w.Message.st)
	if ck.err != nil {
		return ck.err
	}
	m.Error = ErrorFrame{Error: w.Error.v, Message: w.Message.v}
	return nil
}
