package event

import (
	"errors"

	"github.com/atrelay/relay/engine/atproto/cid"
	d "github.com/atrelay/relay/engine/atproto/dagcbor"
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
	dst = d.AppendMapHeader(dst, 11+presence(c.PrevData))
	dst = d.AppendArrayHeader(d.AppendText(dst, "ops"), len(c.Ops))
	for i := range c.Ops {
		dst = appendOp(dst, &c.Ops[i])
	}
	dst = putText(dst, "rev", c.Rev)
	dst = putInt(dst, "seq", c.Seq)
	dst = putText(dst, "repo", c.Repo)
	dst = putText(dst, "time", c.Time)
	dst = d.AppendArrayHeader(d.AppendText(dst, "blobs"), len(c.Blobs))
	for _, b := range c.Blobs {
		dst = d.AppendCIDLink(dst, b)
	}
	dst = nullableText(dst, "since", c.Since)
	dst = d.AppendBytes(d.AppendText(dst, "blocks"), c.Blocks)
	dst = d.AppendCIDLink(d.AppendText(dst, "commit"), c.Commit)
	dst = d.AppendBool(d.AppendText(dst, "rebase"), c.Rebase)
	dst = d.AppendBool(d.AppendText(dst, "tooBig"), c.TooBig)
	return optionalLink(dst, "prevData", c.PrevData)
}

func appendOp(dst []byte, o *Op) []byte {
	dst = d.AppendMapHeader(dst, 3+presence(o.Prev))
	dst = d.AppendText(dst, "cid")
	if o.CID == nil {
		dst = d.AppendNull(dst)
	} else {
		dst = d.AppendCIDLink(dst, o.CID)
	}
	dst = putText(dst, "path", o.Path)
	dst = optionalLink(dst, "prev", o.Prev)
	return putText(dst, "action", o.Action)
}

// AppendSync appends a canonical #sync frame to dst.
func AppendSync(dst []byte, s *Sync) []byte {
	dst = append(dst, hdrSync...)
	dst = d.AppendMapHeader(dst, 5)
	dst = putText(dst, "did", s.DID)
	dst = putText(dst, "rev", s.Rev)
	dst = putInt(dst, "seq", s.Seq)
	dst = putText(dst, "time", s.Time)
	return d.AppendBytes(d.AppendText(dst, "blocks"), s.Blocks)
}

// AppendIdentity appends a canonical #identity frame to dst; Handle is
// omitted when nil.
func AppendIdentity(dst []byte, e *Identity) []byte {
	dst = append(dst, hdrIdentity...)
	dst = d.AppendMapHeader(dst, 3+presence(e.Handle))
	dst = didSeqTime(dst, e.DID, e.Seq, e.Time)
	return optionalText(dst, "handle", e.Handle)
}

// AppendAccount appends a canonical #account frame to dst; Status is
// omitted when nil.
func AppendAccount(dst []byte, a *Account) []byte {
	dst = append(dst, hdrAccount...)
	dst = d.AppendMapHeader(dst, 4+presence(a.Status))
	dst = didSeqTime(dst, a.DID, a.Seq, a.Time)
	dst = d.AppendBool(d.AppendText(dst, "active"), a.Active)
	return optionalText(dst, "status", a.Status)
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
	dst = d.AppendMapHeader(dst, 1+presence(msg))
	dst = putText(dst, key, name)
	return optionalText(dst, "message", msg)
}

// The field writers below append one map entry, key then value. Callers
// write the entries in canonical order (shorter keys first, then
// bytewise) and count the optional ones present in the map header.

// didSeqTime writes the did, seq and time entries that #identity and
// #account open with.
func didSeqTime(dst, did []byte, seq int64, time []byte) []byte {
	dst = putText(dst, "did", did)
	dst = putInt(dst, "seq", seq)
	return putText(dst, "time", time)
}

func putText(dst []byte, key string, v []byte) []byte {
	return d.AppendText(d.AppendText(dst, key), v)
}

func putInt(dst []byte, key string, v int64) []byte {
	return d.AppendInt(d.AppendText(dst, key), v)
}

// nullableText writes v, or null when v is nil.
func nullableText(dst []byte, key string, v []byte) []byte {
	if v == nil {
		return d.AppendNull(d.AppendText(dst, key))
	}
	return putText(dst, key, v)
}

// optionalText writes nothing when v is nil.
func optionalText(dst []byte, key string, v []byte) []byte {
	if v == nil {
		return dst
	}
	return putText(dst, key, v)
}

// optionalLink writes nothing when c is nil.
func optionalLink(dst []byte, key string, c cid.CID) []byte {
	if c == nil {
		return dst
	}
	return d.AppendCIDLink(d.AppendText(dst, key), c)
}

// presence is 1 for a present (non-nil) optional field, else 0.
func presence[T ~[]byte](v T) int {
	if v == nil {
		return 0
	}
	return 1
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
