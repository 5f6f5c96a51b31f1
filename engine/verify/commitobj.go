package verify

import (
	"errors"
	"fmt"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
	"github.com/atrelay/relay/engine/atproto/cid"
	"github.com/atrelay/relay/engine/atproto/dagcbor"
	"github.com/atrelay/relay/engine/atproto/syntax"
)

// Errors of the commit object (spec §6.1), one per defect. All of them
// map to ReasonBadCommit; Verdict.Err names which.
var (
	ErrCommitEncoding = errors.New("verify: commit block is not canonical DAG-CBOR")
	ErrCommitNotMap   = errors.New("verify: commit block is not a map")
	ErrCommitField    = errors.New("verify: commit field has the wrong type")
	ErrCommitMissing  = errors.New("verify: commit field missing")
	ErrCommitVersion  = errors.New("verify: commit version is not 3")
	ErrCommitSig      = errors.New("verify: commit sig is not 64 bytes")
	ErrCommitDID      = errors.New("verify: commit did is not a valid DID")
	ErrCommitRev      = errors.New("verify: commit rev is not a TID")
	ErrCommitData     = errors.New("verify: commit data is not a blessed dag-cbor CID")
	ErrCommitPrev     = errors.New("verify: commit prev is neither null nor a blessed dag-cbor CID")
)

// commitObj is a decoded commit block: views into the block, plus where
// the "sig" entry sits so the unsigned encoding can be cut out of it.
type commitObj struct {
	did, rev, sig []byte
	data          cid.CID
	version       uint64
	// head is the length of the map head and pairs its pair count;
	// sigStart..sigEnd spans the "sig" key and value.
	head, pairs      int
	sigStart, sigEnd int
}

// commit field bits, to detect missing fields without allocating.
const (
	fDID = 1 << iota
	fRev
	fSig
	fData
	fPrev
	fVersion
	fAll = fDID | fRev | fSig | fData | fPrev | fVersion
)

// parse decodes b strictly: canonical DAG-CBOR, every field of a version-3
// commit present with its type, unknown keys tolerated (they are covered
// by the signature).
func (o *commitObj) parse(b []byte) error {
	*o = commitObj{}
	if err := dagcbor.Validate(b); err != nil {
		return fmt.Errorf("%w: %w", ErrCommitEncoding, err)
	}
	// Validate guarantees every head below is well formed, so the read
	// errors are unreachable; they are still checked, never assumed.
	m, n, hl, err := dagcbor.ReadHead(b)
	if err != nil || m != dagcbor.MajorMap {
		return ErrCommitNotMap
	}
	o.head, o.pairs = hl, int(n)
	seen := 0
	p := hl
	for range o.pairs {
		km, kl, khl, err := dagcbor.ReadHead(b[p:])
		if err != nil || km != dagcbor.MajorText {
			return ErrCommitField
		}
		start := p
		key := b[p+khl : p+khl+int(kl)]
		p += khl + int(kl)
		val := b[p:]
		vn, err := dagcbor.ValidateFirst(val)
		if err != nil {
			return ErrCommitField
		}
		if err := o.field(key, val[:vn], &seen); err != nil {
			return err
		}
		if string(key) == "sig" {
			o.sigStart, o.sigEnd = start, p+vn
		}
		p += vn
	}
	if seen != fAll {
		return ErrCommitMissing
	}
	if o.version != 3 {
		return ErrCommitVersion
	}
	if len(o.sig) != atcrypto.SignatureLen {
		return ErrCommitSig
	}
	if syntax.CheckDID(o.did) != nil {
		return ErrCommitDID
	}
	if syntax.CheckTID(o.rev) != nil {
		return ErrCommitRev
	}
	if !o.data.IsBlessedDagCBOR() {
		return ErrCommitData
	}
	return nil
}

// field stores one known field of the commit from its encoded value v.
// key stays a byte slice: switching on string(key) does not allocate,
// converting it for a call would.
func (o *commitObj) field(key, v []byte, seen *int) error {
	switch string(key) {
	case "did", "rev":
		m, n, hl, err := dagcbor.ReadHead(v)
		if err != nil || m != dagcbor.MajorText {
			return fmt.Errorf("%w: %s", ErrCommitField, string(key))
		}
		if key[0] == 'd' {
			o.did, *seen = v[hl:hl+int(n)], *seen|fDID
		} else {
			o.rev, *seen = v[hl:hl+int(n)], *seen|fRev
		}
	case "sig":
		m, n, hl, err := dagcbor.ReadHead(v)
		if err != nil || m != dagcbor.MajorBytes {
			return fmt.Errorf("%w: sig", ErrCommitField)
		}
		o.sig, *seen = v[hl:hl+int(n)], *seen|fSig
	case "data":
		c, _, err := dagcbor.ReadCIDLink(v)
		if err != nil {
			return fmt.Errorf("%w: data", ErrCommitField)
		}
		o.data, *seen = c, *seen|fData
	case "prev":
		*seen |= fPrev
		if len(v) == 1 && v[0] == 0xf6 { // null
			return nil
		}
		c, _, err := dagcbor.ReadCIDLink(v)
		if err != nil || !c.IsBlessedDagCBOR() {
			return ErrCommitPrev
		}
	case "version":
		m, n, _, err := dagcbor.ReadHead(v)
		if err != nil || m != dagcbor.MajorUint {
			return fmt.Errorf("%w: version", ErrCommitField)
		}
		o.version, *seen = n, *seen|fVersion
	}
	return nil
}

// appendUnsigned appends the unsigned commit encoding that the signature
// covers: the signed block without its "sig" entry and with a map head one
// pair shorter. The rest is canonical already, so no field is re-encoded.
func (o *commitObj) appendUnsigned(dst, block []byte) []byte {
	dst = dagcbor.AppendMapHeader(dst, o.pairs-1)
	dst = append(dst, block[o.head:o.sigStart]...)
	return append(dst, block[o.sigEnd:]...)
}
