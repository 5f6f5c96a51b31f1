package event

import (
	"errors"

	d "github.com/atrelay/relay/engine/dagcbor"
)

// Canonical headers: {"t": <type>, "op": 1} and {"op": -1}. Constants so
// the bytes cannot be modified.
const (
	hdrCommit   = "\xa2\x61t\x67#commit\x62op\x01"
	hdrSync     = "\xa2\x61t\x65#sync\x62op\x01"
	hdrIdentity = "\xa2\x61t\x69#identity\x62op\x01"
	hdrAccount  = "\xa2\x61t\x68#account\x62op\x01"
	hdrInfo     = "\xa2\x61t\x65#info\x62op\x01"
	hdrError    = "\xa1\x62op\x20"
)

// ErrUnknownKind is returned when asked to encode a KindUnknown message.
var ErrUnknownKind = errors.New("event: cannot encode an unknown message kind")

// AppendCommit appends a canonical #commit frame (header and body) to dst.
// Since and Op.CID encode as null when nil; PrevData and Op.Prev are omitted
// when nil. The relay sets Blobs nil and TooBig, Rebase false (spec §15).
// Fields are written as given: the encoder does not validate them.
func AppendCommit(dst []byte, c *Commit) []byte {
	dst = append(dst, hdrCommit...)
	n := 11
	if c.PrevData != nil {
		n++
	}
	dst = d.AppendMapHeader(dst, n)
	dst = d.AppendText(dst, "ops")
	dst = d.AppendArrayHeader(dst, len(c.Ops))
	for i := range c.Ops {
		dst = appendOp(dst, &c.Ops[i])
	}
	dst = d.AppendText(dst, "rev")
	dst = d.AppendText(dst, c.Rev)
	dst = d.AppendText(dst, "seq")
	dst = d.AppendInt(dst, c.Seq)
	dst = d.AppendText(dst, "repo")
	dst = d.AppendText(dst, c.Repo)
	dst = d.AppendText(dst, "time")
	dst = d.AppendText(dst, c.Time)
	dst = d.AppendText(dst, "blobs")
	dst = d.AppendArrayHeader(dst, len(c.Blobs))
	for _, b := range c.Blobs {
		dst = d.AppendCIDLink(dst, b)
	}
	dst = d.AppendText(dst, "since")
	if c.Since == nil {
		dst = d.AppendNull(dst)
	} else {
		dst = d.AppendText(dst, c.Since)
	}
	dst = d.AppendText(dst, "blocks")
	dst = d.AppendBytes(dst, c.Blocks)
	dst = d.AppendText(dst, "commit")
	dst = d.AppendCIDLink(dst, c.Commit)
	dst = d.AppendText(dst, "rebase")
	dst = d.AppendBool(dst, c.Rebase)
	dst = d.AppendText(dst, "tooBig")
	dst = d.AppendBool(dst, c.TooBig)
	if c.PrevData != nil {
		dst = d.AppendText(dst, "prevData")
		dst = d.AppendCIDLink(dst, c.PrevData)
	}
	return dst
}

func appendOp(dst []byte, o *Op) []byte {
	n := 3
	if o.Prev != nil {
		n++
	}
	dst = d.AppendMapHeader(dst, n)
	dst = d.AppendText(dst, "cid")
	if o.CID == nil {
		dst = d.AppendNull(dst)
	} else {
		dst = d.AppendCIDLink(dst, o.CID)
	}
	dst = d.AppendText(dst, "path")
	dst = d.AppendText(dst, o.Path)
	if o.Prev != nil {
		dst = d.AppendText(dst, "prev")
		dst = d.AppendCIDLink(dst, o.Prev)
	}
	dst = d.AppendText(dst, "action")
	return d.AppendText(dst, o.Action)
}

// AppendSync appends a canonical #sync frame to dst.
func AppendSync(dst []byte, s *Sync) []byte {
	dst = append(dst, hdrSync...)
	dst = d.AppendMapHeader(dst, 5)
	dst = d.AppendText(dst, "did")
	dst = d.AppendText(dst, s.DID)
	dst = d.AppendText(dst, "rev")
	dst = d.AppendText(dst, s.Rev)
	dst = d.AppendText(dst, "seq")
	dst = d.AppendInt(dst, s.Seq)
	dst = d.AppendText(dst, "time")
	dst = d.AppendText(dst, s.Time)
	dst = d.AppendText(dst, "blocks")
	return d.AppendBytes(dst, s.Blocks)
}

// AppendIdentity appends a canonical #identity frame to dst; Handle is
// omitted when nil.
func AppendIdentity(dst []byte, e *Identity) []byte {
	dst = append(dst, hdrIdentity...)
	n := 3
	if e.Handle != nil {
		n++
	}
	dst = d.AppendMapHeader(dst, n)
	dst = d.AppendText(dst, "did")
	dst = d.AppendText(dst, e.DID)
	dst = d.AppendText(dst, "seq")
	dst = d.AppendInt(dst, e.Seq)
	dst = d.AppendText(dst, "time")
	dst = d.AppendText(dst, e.Time)
	if e.Handle != nil {
		dst = d.AppendText(dst, "handle")
		dst = d.AppendText(dst, e.Handle)
	}
	return dst
}

// AppendAccount appends a canonical #account frame to dst; Status is
// omitted when nil.
func AppendAccount(dst []byte, a *Account) []byte {
	dst = append(dst, hdrAccount...)
	n := 4
	if a.Status != nil {
		n++
	}
	dst = d.AppendMapHeader(dst, n)
	dst = d.AppendText(dst, "did")
	dst = d.AppendText(dst, a.DID)
	dst = d.AppendText(dst, "seq")
	dst = d.AppendInt(dst, a.Seq)
	dst = d.AppendText(dst, "time")
	dst = d.AppendText(dst, a.Time)
	dst = d.AppendText(dst, "active")
	dst = d.AppendBool(dst, a.Active)
	if a.Status != nil {
		dst = d.AppendText(dst, "status")
		dst = d.AppendText(dst, a.Status)
	}
	return dst
}

// AppendInfo appends a canonical #info frame to dst; Message is omitted
// when nil.
func AppendInfo(dst []byte, i *Info) []byte {
	dst = append(dst, hdrInfo...)
	return appendNameMessage(dst, "name", i.Name, i.Message)
}

// AppendError appends a canonical error frame ({op: -1} header) to dst;
// Message is omitted when nil.
func AppendError(dst []byte, e *ErrorFrame) []byte {
	dst = append(dst, hdrError...)
	return appendNameMessage(dst, "error", e.Error, e.Message)
}

// appendNameMessage writes {<key>: name, message?}; both keys sort before
// "message" (length 4 and 5 versus 7).
func appendNameMessage(dst []byte, key string, name, msg []byte) []byte {
	n := 1
	if msg != nil {
		n++
	}
	dst = d.AppendMapHeader(dst, n)
	dst = d.AppendText(dst, key)
	dst = d.AppendText(dst, name)
	if msg != nil {
		dst = d.AppendText(dst, "message")
		dst = d.AppendText(dst, msg)
	}
	return dst
}

// AppendMessage appends the canonical frame of m's kind.
func AppendMessage(dst []byte, m *Message) ([]byte, error) {
	switch m.Kind {
	case KindCommit:
		return AppendCommit(dst, &m.Commit), nil
	case KindSync:
		return AppendSync(dst, &m.Sync), nil
	case KindIdentity:
		return AppendIdentity(dst, &m.Identity), nil
	case KindAccount:
		return AppendAccount(dst, &m.Account), nil
	case KindInfo:
		return AppendInfo(dst, &m.Info), nil
	case KindError:
		return AppendError(dst, &m.Error), nil
	default:
		return dst, ErrUnknownKind
	}
}

// AppendWithSeq re-encodes a decoded persisted event with a new seq, leaving
// m unchanged: the slow path of RewriteSeq, for frames that are not
// canonical or whose fields the relay changed (e.g. a stripped handle).
func AppendWithSeq(dst []byte, m *Message, seq int64) ([]byte, error) {
	if seq < 1 {
		return dst, ErrSeq
	}
	switch m.Kind {
	case KindCommit:
		c := m.Commit
		c.Seq = seq
		return AppendCommit(dst, &c), nil
	case KindSync:
		s := m.Sync
		s.Seq = seq
		return AppendSync(dst, &s), nil
	case KindIdentity:
		e := m.Identity
		e.Seq = seq
		return AppendIdentity(dst, &e), nil
	case KindAccount:
		a := m.Account
		a.Seq = seq
		return AppendAccount(dst, &a), nil
	default:
		return dst, ErrNoSeq
	}
}
