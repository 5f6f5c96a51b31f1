package identity

import (
	"encoding/json"

	"github.com/atrelay/relay/engine/atproto/atcrypto"
)

// Identity is what the relay needs from a DID document (digest §8.2).
//
// Strings returned by Resolver.Lookup are immutable and stay valid for as
// long as the caller keeps them (they may share memory with the cache, which
// never overwrites bytes it has handed out).
type Identity struct {
	// DID is the DID that was looked up.
	DID string
	// Key is the #atproto signing key.
	Key atcrypto.PublicKey
	// PDSHost is the normalised host of the #atproto_pds endpoint (see
	// NormalizePDSHost).
	PDSHost string
	// Handle is the first valid at:// handle of alsoKnownAs, lower case,
	// or "" if there is none. It is claimed by the document, not verified.
	Handle string
}

// document is the subset of a DID document the relay reads.
type document struct {
	ID                 string   `json:"id"`
	AlsoKnownAs        []string `json:"alsoKnownAs"`
	VerificationMethod []struct {
		ID                 string `json:"id"`
		Type               string `json:"type"`
		Controller         string `json:"controller"`
		PublicKeyMultibase string `json:"publicKeyMultibase"`
	} `json:"verificationMethod"`
	Service []struct {
		ID   string `json:"id"`
		Type string `json:"type"`
		// serviceEndpoint may be a string, a map or a list in DID core;
		// only the string form is an atproto PDS.
		ServiceEndpoint json.RawMessage `json:"serviceEndpoint"`
	} `json:"service"`
}

// ParseDocument extracts the identity of did from a JSON DID document: the
// document id must equal did; the signing key is the first verification
// method with id "#atproto" or "<did>#atproto" and controller did; the PDS is
// the first service with id "#atproto_pds" or "<did>#atproto_pds" and type
// AtprotoPersonalDataServer. A missing or invalid key or PDS is an error
// (ErrNoKey, ErrBadKey, ErrNoPDS, ErrBadPDS): such an account has no working
// identity. A missing handle is not. dev is the development switch
// (NormalizePDSHost).
func ParseDocument(did string, body []byte, dev bool) (Identity, error) {
	id, r := parseDocument(did, body, dev)
	return id, r.Err()
}

func parseDocument(did string, body []byte, dev bool) (Identity, Reason) {
	var doc document
	if err := json.Unmarshal(body, &doc); err != nil {
		return Identity{}, ReasonBadJSON
	}
	if doc.ID != did {
		return Identity{}, ReasonIDMismatch
	}
	id := Identity{DID: did, Handle: handleFromAKA(doc.AlsoKnownAs)}
	found := false
	for _, vm := range doc.VerificationMethod {
		if !fragmentID(vm.ID, did, "#atproto") || vm.Controller != did {
			continue
		}
		k, err := atcrypto.ParseMultibase(vm.Type, vm.PublicKeyMultibase)
		if err != nil {
			return Identity{}, ReasonBadKey
		}
		id.Key, found = k, true
		break
	}
	if !found {
		return Identity{}, ReasonNoKey
	}
	found = false
	for _, s := range doc.Service {
		if !fragmentID(s.ID, did, "#atproto_pds") || s.Type != "AtprotoPersonalDataServer" {
			continue
		}
		var endpoint string
		if err := json.Unmarshal(s.ServiceEndpoint, &endpoint); err != nil {
			return Identity{}, ReasonBadPDS
		}
		host, ok := NormalizePDSHost(endpoint, dev)
		if !ok {
			return Identity{}, ReasonBadPDS
		}
		id.PDSHost, found = host, true
		break
	}
	if !found {
		return Identity{}, ReasonNoPDS
	}
	return id, ReasonNone
}

// fragmentID reports whether id is frag in relative ("#atproto") or
// absolute ("did:plc:…#atproto") form.
func fragmentID(id, did, frag string) bool {
	return id == frag || (len(id) == len(did)+len(frag) && id[:len(did)] == did && id[len(did):] == frag)
}
