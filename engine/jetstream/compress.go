package jetstream

import _ "embed" // the v1 zstd dictionary

// dictV1 is Jetstream's v1 zstd dictionary (legacy_subscribe.zdict, see
// NOTICE): clients that ask /subscribe for compression decode every
// message with it, so it must be exactly these bytes.
//
//go:embed legacy_subscribe.zdict
var dictV1 []byte

// DictionaryV1ID is the dictionary ID of the v1 dictionary, written in the
// header of every compressed message.
const DictionaryV1ID = 1612007021

// DictionaryV1 returns the zstd dictionary /subscribe compresses with, for
// clients and tests that decode the stream. The caller must not modify it.
func DictionaryV1() []byte { return dictV1 }
